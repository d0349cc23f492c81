// The one reporting function behind CUDA_CHECK, CUDNN_CHECK, CUBLAS_CHECK, NCCL_CHECK.
#include "engine/check.h"

#include <cstdlib>
#include <sstream>

namespace incept {

void check_failed(const char* library, const char* expr, const char* file, int line,
                  const std::string& error_text) {
  int device = -1;
  cudaGetDevice(&device);  // best effort: the device may be what failed
  std::ostringstream os;
  os << library << " error: " << error_text << "\n  in: " << expr << "\n  at: " << file << ":" << line
     << " (device " << device << ")";
  throw CudaError(os.str());
}

const char* cublas_status_text(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

bool sync_check_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("INCEPT_SYNC_CHECK");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return enabled;
}

void check_launch(const char* what, const char* file, int line) {
  cudaError_t err = cudaPeekAtLastError();
  if (err == cudaSuccess && sync_check_enabled()) err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear a sticky launch error so the message is ours
    check_failed("CUDA", what, file, line, cudaGetErrorString(err));
  }
}

}  // namespace incept
