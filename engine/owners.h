// Move-only owners of GPU resources: device and pinned buffers, streams, events, graphs,
// cuBLAS/cuDNN handles, cuDNN descriptors and NCCL communicators. Everything else in the
// engine holds non-owning views (raw pointers or spans into these).
#pragma once

#include <cstddef>
#include <span>
#include <utility>

#include "engine/check.h"

namespace incept {

// Owns one handle of a C library; Destroy is the library's destroy function.
template <typename H, auto Destroy>
class UniqueHandle {
 public:
  UniqueHandle() = default;
  explicit UniqueHandle(H h) : h_(h) {}
  UniqueHandle(const UniqueHandle&) = delete;
  UniqueHandle& operator=(const UniqueHandle&) = delete;
  UniqueHandle(UniqueHandle&& o) noexcept : h_(std::exchange(o.h_, H{})) {}
  UniqueHandle& operator=(UniqueHandle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, H{});
    }
    return *this;
  }
  ~UniqueHandle() { reset(); }
  void reset() {
    if (h_) Destroy(h_);  // destructors never throw: a failed destroy is ignored
    h_ = H{};
  }
  // Gives up ownership without destroying (e.g. an NCCL communicator that must be aborted instead).
  H release() { return std::exchange(h_, H{}); }
  H get() const { return h_; }
  operator H() const { return h_; }  // NOLINT: used as the raw handle in library calls
  explicit operator bool() const { return h_ != H{}; }

 private:
  H h_{};
};

using Stream = UniqueHandle<cudaStream_t, cudaStreamDestroy>;
using Event = UniqueHandle<cudaEvent_t, cudaEventDestroy>;
using Graph = UniqueHandle<cudaGraph_t, cudaGraphDestroy>;
using GraphExec = UniqueHandle<cudaGraphExec_t, cudaGraphExecDestroy>;
using CublasHandle = UniqueHandle<cublasHandle_t, cublasDestroy>;
using CudnnHandle = UniqueHandle<cudnnHandle_t, cudnnDestroy>;
using TensorDesc = UniqueHandle<cudnnTensorDescriptor_t, cudnnDestroyTensorDescriptor>;
using FilterDesc = UniqueHandle<cudnnFilterDescriptor_t, cudnnDestroyFilterDescriptor>;
using ConvDesc = UniqueHandle<cudnnConvolutionDescriptor_t, cudnnDestroyConvolutionDescriptor>;
using NcclComm = UniqueHandle<ncclComm_t, ncclCommDestroy>;

Stream make_stream(bool non_blocking = true);
Event make_event(bool timing = true);
CublasHandle make_cublas();
CudnnHandle make_cudnn();
TensorDesc make_tensor_desc();
FilterDesc make_filter_desc();
ConvDesc make_conv_desc();

// Device memory (cudaMalloc), untyped; as<T>() gives a typed view.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  ~DeviceBuffer();

  void* data() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }

  void upload(const void* host, std::size_t bytes, cudaStream_t s = nullptr);
  void download(void* host, std::size_t bytes, cudaStream_t s = nullptr) const;
  void fill_bytes(int value, cudaStream_t s = nullptr);

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Page-locked host memory (cudaMallocHost) for asynchronous copies.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(std::size_t bytes);
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(PinnedBuffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  ~PinnedBuffer();

  void* data() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  template <typename T>
  std::span<T> span() const {
    return {static_cast<T*>(ptr_), bytes_ / sizeof(T)};
  }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace incept
