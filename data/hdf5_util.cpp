// HDF5 RAII and attribute helpers (see hdf5_util.h).
#include "data/hdf5_util.h"

#include <mutex>

namespace loom::data::h5 {

void Silence() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

Handle Utf8StringType() {
  Handle type = Type(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  return type;
}

absl::Status WriteStringAttr(hid_t obj, const std::string& name, const std::string& value) {
  // Variable-length UTF-8, which h5py reads back as str (fixed-length comes back as bytes).
  Handle type = Utf8StringType();
  Handle space = Space(H5Screate(H5S_SCALAR));
  Handle attr = Attribute(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT,
                                     H5P_DEFAULT));
  const char* text = value.c_str();
  if (!attr.valid() || H5Awrite(attr.get(), type.get(), &text) < 0) {
    return absl::InternalError("cannot write attribute '" + name + "'");
  }
  return absl::OkStatus();
}

absl::Status WriteIntAttr(hid_t obj, const std::string& name, int64_t value) {
  Handle space = Space(H5Screate(H5S_SCALAR));
  Handle attr = Attribute(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT,
                                     H5P_DEFAULT));
  if (!attr.valid() || H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) < 0) {
    return absl::InternalError("cannot write attribute '" + name + "'");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadStringAttr(hid_t obj, const std::string& name) {
  if (H5Aexists(obj, name.c_str()) <= 0) {
    return absl::InvalidArgumentError("attribute '" + name + "' is missing");
  }
  Handle attr = Attribute(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  Handle type = Type(H5Aget_type(attr.get()));
  if (!attr.valid() || !type.valid() || H5Tget_class(type.get()) != H5T_STRING) {
    return absl::InvalidArgumentError("attribute '" + name + "' is not a string");
  }
  if (H5Tis_variable_str(type.get()) > 0) {
    char* text = nullptr;
    Handle mem = Utf8StringType();
    if (H5Aread(attr.get(), mem.get(), &text) < 0 || text == nullptr) {
      return absl::InvalidArgumentError("attribute '" + name + "' cannot be read");
    }
    std::string value(text);
    H5free_memory(text);
    return value;
  }
  const size_t size = H5Tget_size(type.get());
  std::string value(size, '\0');
  if (H5Aread(attr.get(), type.get(), value.data()) < 0) {
    return absl::InvalidArgumentError("attribute '" + name + "' cannot be read");
  }
  value.resize(value.find('\0') == std::string::npos ? size : value.find('\0'));
  return value;
}

absl::StatusOr<int64_t> ReadIntAttr(hid_t obj, const std::string& name) {
  if (H5Aexists(obj, name.c_str()) <= 0) {
    return absl::InvalidArgumentError("attribute '" + name + "' is missing");
  }
  Handle attr = Attribute(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  Handle type = Type(H5Aget_type(attr.get()));
  if (!attr.valid() || H5Tget_class(type.get()) != H5T_INTEGER) {
    return absl::InvalidArgumentError("attribute '" + name + "' is not an integer");
  }
  int64_t value = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_INT64, &value) < 0) {
    return absl::InvalidArgumentError("attribute '" + name + "' cannot be read");
  }
  return value;
}

absl::StatusOr<std::vector<hsize_t>> Dims(hid_t dataset) {
  Handle space = Space(H5Dget_space(dataset));
  if (!space.valid()) return absl::InvalidArgumentError("dataset has no dataspace");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) return absl::InvalidArgumentError("dataset has an invalid dataspace");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

}  // namespace loom::data::h5
