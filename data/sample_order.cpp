// Sample order and augmentation draws (sample_order.h).
#include "data/sample_order.h"

#include <fmt/format.h>

#include <numeric>

#include "engine/error.h"

namespace incept::data {
namespace {

std::uint64_t fmix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Stream tags keep the permutation's and the crops' draws independent for one seed.
constexpr std::uint64_t kPermutationStream = 0x7065726d75746531ULL;
constexpr std::uint64_t kCropStream = 0x63726f7073747231ULL;

}  // namespace

std::uint64_t mix_hash(std::uint64_t seed, std::uint64_t a, std::uint64_t b) {
  std::uint64_t h = fmix64(seed + 0x9e3779b97f4a7c15ULL);
  h = fmix64(h ^ (a + 0x632be59bd9b4e019ULL));
  return fmix64(h ^ (b + 0x85157af5ULL));
}

SampleOrder::SampleOrder(std::int64_t n_records, std::uint64_t seed, bool shuffle)
    : n_(n_records), seed_(seed), shuffle_(shuffle) {
  if (n_records <= 0) throw Error(fmt::format("sample order over {} records: need at least one", n_records));
}

void SampleOrder::fill(std::int64_t e, std::vector<std::int64_t>* perm) const {
  perm->resize(std::size_t(n_));
  std::iota(perm->begin(), perm->end(), std::int64_t(0));
  if (!shuffle_) return;
  // Fisher-Yates, each swap drawn from the hash of (seed, epoch, step).
  std::int64_t* p = perm->data();
  for (std::int64_t i = n_ - 1; i > 0; --i) {
    const auto j = std::int64_t(bounded(
        mix_hash(seed_ ^ kPermutationStream, std::uint64_t(e), std::uint64_t(i)), std::uint64_t(i + 1)));
    std::swap(p[i], p[j]);
  }
}

std::int64_t SampleOrder::record(std::int64_t s) const {
  if (s < 0) throw Error(fmt::format("sample order: negative sample number {}", s));
  if (!shuffle_) return s % n_;
  const std::int64_t e = s / n_;
  if (e != cached_epoch_) {
    fill(e, &perm_);
    cached_epoch_ = e;
  }
  return perm_[std::size_t(s % n_)];
}

std::vector<std::int64_t> SampleOrder::permutation(std::int64_t e) const {
  std::vector<std::int64_t> p;
  fill(e, &p);
  return p;
}

CropParams train_crop(std::uint64_t seed, std::int64_t s, int height, int width, int crop, bool mirror) {
  CropParams c;
  const std::uint64_t stream = seed ^ kCropStream;
  if (crop > 0) {
    c.y0 = std::int32_t(bounded(mix_hash(stream, std::uint64_t(s), 0), std::uint64_t(height - crop + 1)));
    c.x0 = std::int32_t(bounded(mix_hash(stream, std::uint64_t(s), 1), std::uint64_t(width - crop + 1)));
  }
  if (mirror) c.mirror = std::int32_t(mix_hash(stream, std::uint64_t(s), 2) >> 63);
  return c;
}

CropParams center_crop(int height, int width, int crop) {
  CropParams c;
  if (crop > 0) c.y0 = (height - crop) / 2, c.x0 = (width - crop) / 2;
  return c;
}

}  // namespace incept::data
