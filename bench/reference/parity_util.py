"""What the parity scripts share: relative errors, and every parameter's gradient against
loom's, with attention key biases (zero gradient in exact arithmetic) measured against the
whole gradient."""


def rel_err(a, b):
    """||a - b|| / ||b|| in float64 (b = loom's)."""
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).norm() / max(b.norm().item(), 1e-12)).item()


def check_grads(net, expected, tolerance, failures, prefix="grad/"):
    """Compares each parameter's .grad with expected[prefix + name]; appends a line to
    `failures` per disagreement; returns {"max_grad_rel_err", "worst_grad", "grads_checked"}."""
    names = dict(net.named_parameters())
    whole = sum(expected[prefix + n].double().pow(2).sum().item() for n in names if prefix + n in expected) ** 0.5
    worst, worst_name, checked = 0.0, "", 0
    for name, p in names.items():
        if prefix + name not in expected:
            failures.append(f"{prefix}{name}: loom sent none")
            continue
        b = expected[prefix + name].double()
        if name.endswith("attn.k.bias"):
            err = (p.grad.double() - b).norm().item() / max(whole, 1e-12)
        else:
            err = rel_err(p.grad, b)
        checked += 1
        if err > worst:
            worst, worst_name = err, name
        if err > tolerance:
            failures.append(f"{prefix}{name}: relative error {err:.3g} > {tolerance}")
    return {"max_grad_rel_err": worst, "worst_grad": worst_name, "grads_checked": checked}
