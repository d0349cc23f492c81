// Where each training sample comes from and how it is augmented, as pure functions of the
// sample's global number s (the n-th image the trainer consumes, over all epochs and ranks).
// Nothing depends on a sequential random generator, so the data order and every crop and
// mirror are the same whatever the thread count, the rank split or the iteration a run was
// resumed at.
//   epoch e = s / n_records, position s % n_records;
//   record  = perm_e[position], perm_e a permutation of [0, n) seeded by (seed, e), or the
//             key order (Caffe's) without shuffle.
#pragma once

#include <cstdint>
#include <vector>

namespace incept::data {

// A counter-based 64-bit hash (splitmix64's finaliser over the mixed inputs): the random
// stream of the loader. Same inputs, same bits, on every platform.
std::uint64_t mix_hash(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0);
// A value in [0, bound) from 64 random bits (multiply-shift: bias below 2^-32 for any bound
// a dataset can have).
inline std::uint64_t bounded(std::uint64_t bits, std::uint64_t bound) {
  return std::uint64_t((static_cast<unsigned __int128>(bits) * bound) >> 64);
}

class SampleOrder {
 public:
  SampleOrder(std::int64_t n_records, std::uint64_t seed, bool shuffle);

  std::int64_t records() const { return n_; }
  std::int64_t epoch_of(std::int64_t s) const { return s / n_; }
  // The record (key-order index) global sample s reads. Not thread-safe: it caches the
  // permutation of the epoch last asked for (regenerated in O(n) when the epoch changes).
  std::int64_t record(std::int64_t s) const;
  // The whole permutation of epoch e (key order without shuffle).
  std::vector<std::int64_t> permutation(std::int64_t e) const;

 private:
  void fill(std::int64_t e, std::vector<std::int64_t>* perm) const;

  std::int64_t n_;
  std::uint64_t seed_;
  bool shuffle_;
  mutable std::int64_t cached_epoch_ = -1;
  mutable std::vector<std::int64_t> perm_;
};

// The training augmentation of sample s (Caffe's DataTransformer in TRAIN: a random crop
// offset in [0, size - crop] each way and a mirror coin flip), from (seed, s) alone.
// crop 0 means no crop (offsets 0).
// Same layout as kernels::CropParams, which reads these from the batch block on the GPU.
struct CropParams {
  std::int32_t y0 = 0, x0 = 0, mirror = 0;
};
CropParams train_crop(std::uint64_t seed, std::int64_t s, int height, int width, int crop, bool mirror);
// Caffe's TEST crop: centred ((size - crop) / 2), no mirror.
CropParams center_crop(int height, int width, int crop);

}  // namespace incept::data
