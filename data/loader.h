// The training data loader: batches of decoded uint8 images (HWC, BGR as Caffe stores them)
// with their crop offsets, mirror flags and labels, read from a DIGITS/Caffe LMDB by a pool of
// decode threads ahead of the trainer. Each batch is ONE contiguous block from the caller's
// HostAllocator (the trainer passes pinned memory), so a single async copy moves it to the
// GPU, where kernels/input_transform_gpu.h applies Caffe's crop, mirror and mean.
//
// Train mode: batch k holds global samples s = k * global_batch + rank_offset + j (j < batch),
// a continuous stream over epochs like Caffe's Data layer; SampleOrder gives each sample's
// record (a new seeded order every epoch) and train_crop its crop and mirror, both pure
// functions of (seed, s): the same batches whatever the thread count, the rank split or the
// iteration a run resumed at. Val mode: one pass over the records in key order (Caffe's),
// centre crop, no mirror; the last batch is padded (pixels 0, label -1, n_valid real images).
//
// A record that does not decode, or has another size than the loader's (the first record's
// unless given), is replaced by the next record in key order that decodes, counted and
// described (first few messages); it never stops training. A missing or empty database, or
// one where nothing decodes, is an incept::Error at construction.
//
// This header includes no CUDA or engine header; next(), release() and start() are called
// from one thread (the trainer's); release() may come from another (e.g. a copy callback).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/sample_order.h"

namespace incept::data {

// Where the batch blocks come from: the trainer passes cudaHostAlloc/cudaFreeHost; the
// default (empty functions) is page-aligned operator new/delete.
struct HostAllocator {
  std::function<void*(std::size_t)> alloc;
  std::function<void(void*)> free;
};

enum class LoaderMode { kTrain, kVal };

struct LoaderOptions {
  std::string db;  // LMDB folder (train_db / val_db)
  LoaderMode mode = LoaderMode::kTrain;
  int batch = 0;                  // images per batch from this loader (this rank's share)
  std::int64_t global_batch = 0;  // images per global step over all ranks (0: = batch)
  int rank_offset = 0;            // this loader's first position inside each global batch
  int crop = 0;                   // 0: no crop (whole image)
  bool mirror = false;            // train: random mirror p=0.5
  bool shuffle = true;            // train: new seeded order each epoch
  std::uint64_t seed = 1;
  int threads = 0;   // decode threads; 0: this loader's share of the cores, less one
  int prefetch = 3;  // batches decoded ahead (slots: prefetch + 1, one for the trainer)
  int height = 0, width = 0, channels = 0;  // expected record shape; 0: from the first record
  bool accurate_jpeg = true;  // libjpeg's islow DCT + fancy upsampling (OpenCV/Caffe); false: fast DCT
};

struct Batch {
  std::int64_t index = 0;                // train: the iteration (global step); val: batch number in the pass
  int n = 0;                             // images in the batch (== options.batch)
  int n_valid = 0;                       // val: real images (the rest is padding); train: == n
  const std::uint8_t* pixels = nullptr;  // [n, H, W, C] uint8, HWC, BGR
  const CropParams* crops = nullptr;     // [n]
  const std::int32_t* labels = nullptr;  // [n]; -1 for val padding
  const void* block = nullptr;           // ONE allocation holding pixels | crops | labels
  std::size_t block_bytes = 0;
  int corrupt = 0;  // records in this batch that failed and were replaced
};

class BatchLoader {
 public:
  BatchLoader(const LoaderOptions& options, HostAllocator allocator = {});
  ~BatchLoader();  // stops the threads (also mid-pass) and frees the blocks
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  int height() const;
  int width() const;
  int channels() const;
  std::int64_t records() const;
  // ceil(records / global_batch): val, the batches of one pass; train, DIGITS' iterations per epoch.
  std::int64_t batches_per_pass() const;

  // Train: the stream restarts at iteration first_index. Val: a pass from batch first_index
  // (normally 0). Batches still held stay valid until released. next() without start() = start(0).
  void start(std::int64_t first_index);
  // Blocks until the next consecutive batch is decoded. The reference stays valid until release().
  // Throws incept::Error after the end of a val pass, or when every slot is held.
  const Batch& next();
  // Gives the batch's slot back for refilling (after its copy to the GPU finished).
  void release(const Batch& batch);

  // Replaced reads (a bad record counts each time the order reaches it), distinct bad
  // records, and the first few messages ("record 12 (key '00000012_3'): corrupt JPEG ...").
  std::int64_t corrupt_total() const;
  std::int64_t corrupt_records() const;
  std::vector<std::string> corrupt_examples() const;

  struct Stats {
    double decode_s = 0;      // wall time decoding, summed over the decode threads
    double wait_s = 0;        // time next() blocked
    std::int64_t images = 0;  // images decoded (padding excluded)
    double decode_cpu_s = 0;  // CPU time the decode threads got while decoding (images / it = per core)
  };
  Stats stats() const;
  int threads() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace incept::data
