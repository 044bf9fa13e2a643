// TensorBoard event files written without TensorFlow: TFRecord framing (CRC32C) of
// hand-encoded `Event` protocol buffers holding scalars and PNG images, the subset of
// tensorboard/compat/proto/{event,summary}.proto that TensorBoard's reader needs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace loom::tensorboard {

// CRC-32C (Castagnoli), as TFRecord uses it.
uint32_t Crc32c(std::string_view bytes);

// The form TFRecord stores: rotated right by 15 bits plus a constant, so that a CRC of
// bytes that themselves hold CRCs does not degenerate.
uint32_t MaskedCrc32c(std::string_view bytes);

// One TFRecord: the length (uint64, little-endian), its masked CRC, `data`, its masked CRC.
std::string FrameRecord(std::string_view data);

// Appends events to `events.out.tfevents.<seconds>.<host>.<pid>` in a directory, one
// record per write(2) call, so a process that dies loses no record it wrote and leaves
// no half record. Each process start writes a new file, as TensorBoard expects.
class EventWriter {
 public:
  // Creates the file in `dir` and writes its first two events: the file version
  // ("brain.Event:2"), then a session start at `first_step`, from which TensorBoard
  // drops what earlier files hold at `first_step` and later (steps logged by a process
  // that ended before its checkpoint covered them).
  static absl::StatusOr<std::unique_ptr<EventWriter>> Open(const std::string& dir, int64_t first_step);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  // One event at `step` with a float scalar per (tag, value).
  absl::Status AddScalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);

  // One event at `step` with the image `png` (the bytes of a PNG file; its size and
  // channels are read from its header) under `tag`.
  absl::Status AddPng(const std::string& tag, int64_t step, std::string_view png);

  const std::string& path() const { return path_; }

 private:
  EventWriter(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  absl::Status WriteEvent(int64_t step, std::string_view what);

  std::string path_;
  int fd_ = -1;
};

}  // namespace loom::tensorboard
