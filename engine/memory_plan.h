// Lifetime-based placement of buffers in one arena: every buffer has a size and the
// interval of time steps during which it must hold its contents; two buffers may share
// addresses only if their intervals do not overlap. The net plans activations, gradients
// and per-layer saved state this way once for a given batch and input size; a backend then
// allocates one arena of arena_elems() and turns offsets into pointers.
#pragma once

#include <cstdint>
#include <vector>

namespace incept {

class MemoryPlan {
 public:
  // Offsets are multiples of `align` elements (64 floats = 256 bytes, what cuDNN/cuBLAS like).
  explicit MemoryPlan(std::int64_t align = 64) : align_(align) {}

  // A buffer of `elems` live over the time steps [first, last] (inclusive). Returns its id.
  int add(std::int64_t elems, int first, int last);
  // Extends a buffer's lifetime to also cover [first, last].
  void extend(int id, int first, int last);

  // Greedy placement, largest first, each at the lowest offset that does not collide with an
  // already placed buffer whose lifetime overlaps. Call once after all add().
  void place();

  std::int64_t offset(int id) const { return buffers_[id].offset; }
  std::int64_t arena_elems() const { return arena_; }
  // What the arena would need without any reuse (for the start-up report).
  std::int64_t total_elems() const;
  int size() const { return int(buffers_.size()); }

 private:
  struct Buffer {
    std::int64_t elems;
    int first, last;
    std::int64_t offset = -1;
  };
  std::int64_t align_;
  std::vector<Buffer> buffers_;
  std::int64_t arena_ = 0;
};

}  // namespace incept
