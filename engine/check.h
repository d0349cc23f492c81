// Error checks for the CUDA runtime, cuDNN, cuBLAS and NCCL. Every check reports the
// failed expression, file, line, current device and the library's error text through
// one function (check_failed), which throws incept::CudaError. A launch check follows
// every kernel; with INCEPT_SYNC_CHECK=1 in the environment it also synchronizes so that
// an asynchronous fault is reported at the kernel that caused it.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

#include <stdexcept>
#include <string>

#include "engine/error.h"

namespace incept {

// A failed GPU library call (a bug or a broken device, not bad user input).
class CudaError : public Error {
 public:
  using Error::Error;
};

[[noreturn]] void check_failed(const char* library, const char* expr, const char* file, int line,
                               const std::string& error_text);

const char* cublas_status_text(cublasStatus_t s);

// True when INCEPT_SYNC_CHECK is set: launch checks then synchronize the device.
bool sync_check_enabled();
void check_launch(const char* what, const char* file, int line);

}  // namespace incept

#define CUDA_CHECK(expr)                                                                          \
  do {                                                                                            \
    cudaError_t incept_err_ = (expr);                                                             \
    if (incept_err_ != cudaSuccess)                                                               \
      ::incept::check_failed("CUDA", #expr, __FILE__, __LINE__, cudaGetErrorString(incept_err_)); \
  } while (0)

#define CUDNN_CHECK(expr)                                                                          \
  do {                                                                                             \
    cudnnStatus_t incept_st_ = (expr);                                                             \
    if (incept_st_ != CUDNN_STATUS_SUCCESS)                                                        \
      ::incept::check_failed("cuDNN", #expr, __FILE__, __LINE__, cudnnGetErrorString(incept_st_)); \
  } while (0)

#define CUBLAS_CHECK(expr)                                                                                   \
  do {                                                                                                       \
    cublasStatus_t incept_st_ = (expr);                                                                      \
    if (incept_st_ != CUBLAS_STATUS_SUCCESS)                                                                 \
      ::incept::check_failed("cuBLAS", #expr, __FILE__, __LINE__, ::incept::cublas_status_text(incept_st_)); \
  } while (0)

#define NCCL_CHECK(expr)                                                                         \
  do {                                                                                           \
    ncclResult_t incept_nr_ = (expr);                                                            \
    if (incept_nr_ != ncclSuccess)                                                               \
      ::incept::check_failed("NCCL", #expr, __FILE__, __LINE__, ncclGetErrorString(incept_nr_)); \
  } while (0)

// After every kernel launch: KERNEL_CHECK("lrn_fwd_kernel");
#define KERNEL_CHECK(what) ::incept::check_launch(what, __FILE__, __LINE__)
