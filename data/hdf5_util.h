// Thin RAII and error helpers over the HDF5 C API: handles close themselves, library
// error printing is silenced, and failures become absl::Status naming the file.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/status.h"

namespace loom::data::h5 {

// Owns one hid_t and closes it with the matching H5*close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      Reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { Reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void Reset() {
    if (id_ >= 0 && closer_ != nullptr) closer_(id_);
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

inline Handle File(hid_t id) { return Handle(id, H5Fclose); }
inline Handle Dataset(hid_t id) { return Handle(id, H5Dclose); }
inline Handle Space(hid_t id) { return Handle(id, H5Sclose); }
inline Handle Type(hid_t id) { return Handle(id, H5Tclose); }
inline Handle Plist(hid_t id) { return Handle(id, H5Pclose); }
inline Handle Attribute(hid_t id) { return Handle(id, H5Aclose); }

// Turns off HDF5's own stderr error stack printing (loom reports errors itself).
void Silence();

// Attribute helpers on a file or object.
absl::Status WriteStringAttr(hid_t obj, const std::string& name, const std::string& value);
absl::Status WriteIntAttr(hid_t obj, const std::string& name, int64_t value);
absl::StatusOr<std::string> ReadStringAttr(hid_t obj, const std::string& name);
absl::StatusOr<int64_t> ReadIntAttr(hid_t obj, const std::string& name);

// The dims of a dataset's dataspace.
absl::StatusOr<std::vector<hsize_t>> Dims(hid_t dataset);

// A variable-length UTF-8 string type.
Handle Utf8StringType();

}  // namespace loom::data::h5
