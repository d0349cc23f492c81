// incept::Error, the user-facing error type, in a header that includes no CUDA library, so
// the data side (decoders, LMDB, the training loader, imagenet_ingest) builds without the
// CUDA headers. engine/check.h adds the GPU library checks on top of it.
#pragma once

#include <stdexcept>

namespace incept {

// A user-facing error: bad flags, missing files, corrupt data. The message says what was
// wrong and what to do; tools print it without a stack of library text.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace incept
