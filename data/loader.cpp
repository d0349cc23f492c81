// The training data loader (loader.h).
//
// Scheduling: batches are filled strictly in order, batch k in slot k % slots. Decode threads
// claim chunks of a few images of the batch being filled under one mutex (a lock per chunk,
// never per image) and decode them outside it, each with its own LMDB read transaction and
// libjpeg-turbo handle, straight into the slot's block. The last chunk to finish marks the
// batch ready. Waiting is on condition variables only: threads sleep while every slot is
// full, the consumer while its batch is not ready.
#include "data/loader.h"

#include <fmt/format.h>
#include <lmdb.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <mutex>
#include <new>
#include <thread>

#include "data/record_decoder.h"
#include "engine/error.h"

namespace incept::data {
namespace {

constexpr int kMaxChunk = 16;
constexpr std::size_t kMaxExamples = 8;
constexpr std::size_t kBlockAlign = 4096;

// CPU time of the calling thread (what a decode thread really got of its core).
double thread_cpu_s() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::size_t align_up(std::size_t v, std::size_t a) {
  return (v + a - 1) / a * a;
}

// The LMDB environment and every key in key order (one buffer, offsets into it): records are
// read by index through mdb_get in each thread's own read transaction; values stay in the map.
class LmdbIndex {
 public:
  explicit LmdbIndex(const std::string& dir) : dir_(dir) {
    namespace fs = std::filesystem;
    if (!fs::exists(fs::path(dir) / "data.mdb")) {
      std::string hint;
      if (fs::exists(fs::path(dir) / "train_db" / "data.mdb"))
        hint = fmt::format(" (it looks like a dataset folder: use {}/train_db or {}/val_db)", dir, dir);
      throw Error(fmt::format("{} is not an LMDB database: no data.mdb{}", dir, hint));
    }
    int rc = mdb_env_create(&env_);
    if (!rc) rc = mdb_env_open(env_, dir.c_str(), MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0664);
    MDB_txn* txn = nullptr;
    MDB_cursor* cur = nullptr;
    if (!rc) rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
    if (!rc) rc = mdb_dbi_open(txn, nullptr, 0, &dbi_);
    if (!rc) rc = mdb_cursor_open(txn, dbi_, &cur);
    if (!rc) {
      offsets_.push_back(0);
      MDB_val k, v;
      for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        keys_.append(static_cast<const char*>(k.mv_data), k.mv_size);
        offsets_.push_back(keys_.size());
      }
      if (rc == MDB_NOTFOUND) rc = 0;
    }
    if (cur) mdb_cursor_close(cur);
    if (txn) mdb_txn_abort(txn);
    if (rc) {
      mdb_env_close(env_);
      throw Error(fmt::format("cannot read LMDB {}: {}", dir, mdb_strerror(rc)));
    }
    if (size() == 0) {
      mdb_env_close(env_);
      throw Error(fmt::format("LMDB {} is empty: it holds no records", dir));
    }
  }
  ~LmdbIndex() { mdb_env_close(env_); }
  LmdbIndex(const LmdbIndex&) = delete;
  LmdbIndex& operator=(const LmdbIndex&) = delete;

  std::int64_t size() const { return std::int64_t(offsets_.size()) - 1; }
  const std::string& dir() const { return dir_; }
  std::string_view key(std::int64_t r) const {
    return std::string_view(keys_).substr(offsets_[r], offsets_[r + 1] - offsets_[r]);
  }
  MDB_txn* begin_read() const {
    MDB_txn* txn = nullptr;
    const int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
    if (rc) throw Error(fmt::format("cannot read LMDB {}: {}", dir_, mdb_strerror(rc)));
    return txn;
  }
  // The value of record r (a view into the map, valid while txn lives). False if absent.
  bool get(MDB_txn* txn, std::int64_t r, const std::uint8_t** data, std::size_t* size, int* rc) const {
    const std::string_view k = key(r);
    MDB_val kv{k.size(), const_cast<char*>(k.data())}, vv;
    *rc = mdb_get(txn, dbi_, &kv, &vv);
    if (*rc) return false;
    *data = static_cast<const std::uint8_t*>(vv.mv_data), *size = vv.mv_size;
    return true;
  }

 private:
  std::string dir_;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  std::string keys_;
  std::vector<std::size_t> offsets_;
};

std::string describe_key(std::string_view key) {
  std::string out;
  for (char c : key.substr(0, 80)) out += (c >= 32 && c < 127) ? c : '?';
  return key.size() > 80 ? out + "..." : out;
}

}  // namespace

struct BatchLoader::Impl {
  enum class SlotState { kFree, kFilling, kReady, kHeld };
  struct Slot {
    Batch batch;
    std::uint8_t* block = nullptr;
    SlotState state = SlotState::kFree;
    int remaining = 0;  // images of the batch not yet decoded
  };
  // A claimed piece of a batch: images [j0, j1) of slot `slot`, their records (-1: padding).
  struct Claim {
    int slot = 0, j0 = 0, j1 = 0;
    std::int64_t k = 0;
    std::uint64_t generation = 0;
    std::array<std::int64_t, kMaxChunk> record{}, sample{};
  };

  LoaderOptions opt;
  HostAllocator allocator;
  LmdbIndex db;
  RecordShape shape;
  std::int64_t n = 0, global = 0;
  SampleOrder order;
  std::size_t pixel_bytes = 0, crop_offset = 0, label_offset = 0, block_bytes = 0;
  int chunk = 1, n_threads = 1;
  std::unique_ptr<std::atomic<std::uint8_t>[]> bad;  // 1: the record is known not to decode

  mutable std::mutex mu;
  std::condition_variable work_cv, ready_cv, idle_cv;
  std::vector<Slot> slots;
  std::vector<std::thread> threads;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> generation{0};
  bool started = false;
  std::int64_t limit = std::numeric_limits<std::int64_t>::max();  // batches in a pass (val)
  std::int64_t next_out = 0, fill_k = 0;
  int claim_pos = 0, busy = 0;
  std::exception_ptr fatal;
  std::int64_t corrupt_total = 0, corrupt_records = 0, images = 0;
  std::vector<std::string> examples;
  double decode_s = 0, decode_cpu_s = 0, wait_s = 0;

  Impl(const LoaderOptions& o, HostAllocator a)
      : opt(o), allocator(std::move(a)), db(o.db), n(db.size()), order(n, o.seed, o.shuffle) {}
  // Stops the threads (a chunk in progress ends at its next image) and frees the blocks; also
  // what a constructor that throws half-way leaves behind.
  ~Impl() {
    {
      std::lock_guard lk(mu);
      stop.store(true);
    }
    work_cv.notify_all();
    for (auto& t : threads) t.join();
    for (auto& s : slots)
      if (s.block) allocator.free(s.block);
  }

  Slot& slot_of(std::int64_t k) { return slots[std::size_t(k % std::int64_t(slots.size()))]; }

  void check_options();
  void find_shape();
  void allocate();
  bool can_claim();
  void claim(Claim* c);
  void worker();
  void decode_chunk(const Claim& c, MDB_txn* txn, RecordDecoder* dec, int* decoded, int* corrupt,
                    std::vector<std::string>* messages);
};

void BatchLoader::Impl::check_options() {
  if (opt.batch <= 0)
    throw Error(fmt::format("loader for {}: batch must be positive, not {}", opt.db, opt.batch));
  global = opt.global_batch > 0 ? opt.global_batch : opt.batch;
  if (opt.rank_offset < 0 || opt.rank_offset + std::int64_t(opt.batch) > global)
    throw Error(fmt::format("loader for {}: images [{}, {}) do not fit in the global batch of {}", opt.db,
                            opt.rank_offset, opt.rank_offset + opt.batch, global));
  if (opt.channels != 0 && opt.channels != 1 && opt.channels != 3)
    throw Error(
        fmt::format("loader for {}: channels {} (1 or 3, or 0 for the records')", opt.db, opt.channels));
  if (opt.crop < 0 || opt.prefetch < 1 || opt.threads < 0)
    throw Error(fmt::format("loader for {}: crop {}, prefetch {}, threads {} (crop >= 0, prefetch >= 1)",
                            opt.db, opt.crop, opt.prefetch, opt.threads));
}

// The records' shape (options, else the first record that decodes) and a check that at
// least one record decodes with it.
void BatchLoader::Impl::find_shape() {
  RecordDecoder dec(opt.accurate_jpeg);
  MDB_txn* txn = db.begin_read();
  std::string first_error;
  std::vector<std::uint8_t> scratch;
  bool ok = false;
  for (std::int64_t r = 0; r < n && !ok; ++r) {
    const std::uint8_t* v = nullptr;
    std::size_t size = 0;
    int rc = 0;
    try {
      if (!db.get(txn, r, &v, &size, &rc)) throw Error(fmt::format("LMDB read: {}", mdb_strerror(rc)));
      RecordShape s = dec.probe(v, size);
      if (opt.height > 0) s.height = opt.height;
      if (opt.width > 0) s.width = opt.width;
      if (opt.channels > 0) s.channels = opt.channels;
      scratch.resize(s.bytes());
      dec.decode(v, size, s, scratch.data());
      shape = s, ok = true;
    } catch (const std::exception& e) {
      if (first_error.empty())
        first_error = fmt::format("record {} (key '{}'): {}", r, describe_key(db.key(r)), e.what());
    }
  }
  mdb_txn_abort(txn);
  if (!ok)
    throw Error(
        fmt::format("no record of {} ({} records) decodes as an image of the expected shape; first: {}",
                    opt.db, n, first_error));
  if (shape.channels != 1 && shape.channels != 3)
    throw Error(fmt::format("{}: records with {} channels (1 or 3 supported)", opt.db, shape.channels));
  if (opt.crop > shape.height || opt.crop > shape.width)
    throw Error(fmt::format("crop size {} is larger than the records of {} ({}x{})", opt.crop, opt.db,
                            shape.height, shape.width));
}

void BatchLoader::Impl::allocate() {
  pixel_bytes = std::size_t(opt.batch) * shape.bytes();
  crop_offset = align_up(pixel_bytes, 64);
  label_offset = align_up(crop_offset + sizeof(CropParams) * std::size_t(opt.batch), 64);
  block_bytes = label_offset + sizeof(std::int32_t) * std::size_t(opt.batch);
  if (!allocator.alloc || !allocator.free) {
    allocator.alloc = [](std::size_t bytes) { return ::operator new(bytes, std::align_val_t(kBlockAlign)); };
    allocator.free = [](void* p) { ::operator delete(p, std::align_val_t(kBlockAlign)); };
  }
  slots.resize(std::size_t(opt.prefetch) + 1);
  for (Slot& s : slots) {
    s.block = static_cast<std::uint8_t*>(allocator.alloc(block_bytes));
    if (!s.block)
      throw Error(fmt::format("loader: cannot allocate a batch block of {} MiB", block_bytes >> 20));
    Batch& b = s.batch;
    b.n = opt.batch;
    b.pixels = s.block;
    b.crops = reinterpret_cast<const CropParams*>(s.block + crop_offset);
    b.labels = reinterpret_cast<const std::int32_t*>(s.block + label_offset);
    b.block = s.block;
    b.block_bytes = block_bytes;
  }
}

bool BatchLoader::Impl::can_claim() {
  if (!started || fatal || fill_k >= limit) return false;
  const Slot& s = slot_of(fill_k);
  return claim_pos > 0 || s.state == SlotState::kFree;
}

// Under mu: the next chunk of the batch being filled, with its records.
void BatchLoader::Impl::claim(Claim* c) {
  Slot& s = slot_of(fill_k);
  if (claim_pos == 0) {
    s.state = SlotState::kFilling;
    s.remaining = opt.batch;
    s.batch.index = fill_k;
    s.batch.corrupt = 0;
    const std::int64_t first = fill_k * global + opt.rank_offset;
    s.batch.n_valid =
        opt.mode == LoaderMode::kVal ? int(std::clamp<std::int64_t>(n - first, 0, opt.batch)) : opt.batch;
  }
  c->slot = int(&s - slots.data());
  c->k = fill_k;
  c->generation = generation.load();
  c->j0 = claim_pos;
  c->j1 = std::min(claim_pos + chunk, opt.batch);
  for (int j = c->j0; j < c->j1; ++j) {
    const std::int64_t pos = fill_k * global + opt.rank_offset + j;
    c->sample[j - c->j0] = pos;
    if (opt.mode == LoaderMode::kTrain)
      c->record[j - c->j0] = order.record(pos);
    else
      c->record[j - c->j0] = pos < n ? pos : -1;
  }
  claim_pos = c->j1;
  if (claim_pos == opt.batch) ++fill_k, claim_pos = 0;
}

// Outside mu: decodes the chunk into its slot; a record that fails is replaced by the next
// record in key order that decodes (known bad records are skipped without a new attempt).
void BatchLoader::Impl::decode_chunk(const Claim& c, MDB_txn* txn, RecordDecoder* dec, int* decoded,
                                     int* corrupt, std::vector<std::string>* messages) {
  Slot& s = slots[std::size_t(c.slot)];
  const std::size_t image_bytes = shape.bytes();
  auto* crops = reinterpret_cast<CropParams*>(s.block + crop_offset);
  auto* labels = reinterpret_cast<std::int32_t*>(s.block + label_offset);
  for (int j = c.j0; j < c.j1; ++j) {
    if (stop.load(std::memory_order_relaxed) || generation.load(std::memory_order_relaxed) != c.generation)
      return;
    std::uint8_t* dst = s.block + image_bytes * std::size_t(j);
    const std::int64_t sample = c.sample[j - c.j0];
    std::int64_t r = c.record[j - c.j0];
    if (opt.mode == LoaderMode::kTrain)
      crops[j] = train_crop(opt.seed, sample, shape.height, shape.width, opt.crop, opt.mirror);
    else
      crops[j] = center_crop(shape.height, shape.width, opt.crop);
    if (r < 0) {  // val padding
      std::memset(dst, 0, image_bytes);
      labels[j] = -1;
      continue;
    }
    bool ok = false;
    for (std::int64_t attempt = 0; attempt < n && !ok; ++attempt, r = (r + 1) % n) {
      if (bad[std::size_t(r)].load(std::memory_order_relaxed)) {
        ++*corrupt;
        continue;
      }
      const std::uint8_t* v = nullptr;
      std::size_t size = 0;
      int rc = 0;
      try {
        if (!db.get(txn, r, &v, &size, &rc)) throw Error(fmt::format("LMDB read: {}", mdb_strerror(rc)));
        labels[j] = dec->decode(v, size, shape, dst);
        ok = true;
      } catch (const std::exception& e) {
        ++*corrupt;
        if (bad[std::size_t(r)].exchange(1) == 0)
          messages->push_back(fmt::format("record {} (key '{}'): {}", r, describe_key(db.key(r)), e.what()));
      }
    }
    if (!ok) throw Error(fmt::format("no record of {} decodes any more", opt.db));
    ++*decoded;
  }
}

void BatchLoader::Impl::worker() {
  RecordDecoder dec(opt.accurate_jpeg);
  std::vector<std::string> messages;
  MDB_txn* txn = nullptr;
  Claim c;
  std::unique_lock lk(mu, std::defer_lock);
  try {
    txn = db.begin_read();
    lk.lock();
    for (;;) {
      work_cv.wait(lk, [&] { return stop.load() || can_claim(); });
      if (stop.load()) break;
      claim(&c);
      ++busy;
      lk.unlock();
      int decoded = 0, corrupt = 0;
      const auto t0 = std::chrono::steady_clock::now();
      const double c0 = thread_cpu_s();
      std::exception_ptr error;
      try {
        decode_chunk(c, txn, &dec, &decoded, &corrupt, &messages);
      } catch (...) {
        error = std::current_exception();
      }
      const double dt = seconds_since(t0), dc = thread_cpu_s() - c0;
      lk.lock();
      --busy;
      decode_s += dt;
      decode_cpu_s += dc;
      images += decoded;
      corrupt_records += std::int64_t(messages.size());
      for (auto& m : messages)
        if (examples.size() < kMaxExamples) examples.push_back(std::move(m));
      messages.clear();
      if (error && !fatal) fatal = error;
      if (c.generation == generation.load() && !stop.load() && !error) {
        Slot& s = slots[std::size_t(c.slot)];
        s.remaining -= c.j1 - c.j0;
        s.batch.corrupt += corrupt;
        corrupt_total += corrupt;
        if (s.remaining == 0) {
          s.state = SlotState::kReady;
          ready_cv.notify_all();
        }
      }
      if (error) ready_cv.notify_all();
      if (busy == 0) idle_cv.notify_all();
    }
  } catch (...) {
    if (!lk.owns_lock()) lk.lock();
    if (!fatal) fatal = std::current_exception();
    ready_cv.notify_all();
  }
  if (lk.owns_lock()) lk.unlock();
  if (txn) mdb_txn_abort(txn);
}

BatchLoader::BatchLoader(const LoaderOptions& options, HostAllocator allocator)
    : impl_(std::make_unique<Impl>(options, std::move(allocator))) {
  Impl& m = *impl_;
  m.check_options();
  m.find_shape();
  m.bad = std::make_unique<std::atomic<std::uint8_t>[]>(std::size_t(m.n));
  for (std::int64_t r = 0; r < m.n; ++r) m.bad[std::size_t(r)].store(0, std::memory_order_relaxed);
  m.allocate();
  if (m.opt.mode == LoaderMode::kVal) m.limit = batches_per_pass();
  m.n_threads = m.opt.threads;
  if (m.n_threads == 0) {
    // This loader's share of the cores (its share of the global batch), one left for the trainer.
    const double cores = std::max(1u, std::thread::hardware_concurrency());
    m.n_threads = std::clamp(int(cores * double(m.opt.batch) / double(m.global)) - 1, 1, 32);
  }
  m.chunk = std::clamp((m.opt.batch + 2 * m.n_threads - 1) / (2 * m.n_threads), 1, kMaxChunk);
  for (int t = 0; t < m.n_threads; ++t) m.threads.emplace_back([&m] { m.worker(); });
}

BatchLoader::~BatchLoader() = default;

int BatchLoader::height() const {
  return impl_->shape.height;
}
int BatchLoader::width() const {
  return impl_->shape.width;
}
int BatchLoader::channels() const {
  return impl_->shape.channels;
}
std::int64_t BatchLoader::records() const {
  return impl_->n;
}
std::int64_t BatchLoader::batches_per_pass() const {
  return (impl_->n + impl_->global - 1) / impl_->global;
}
int BatchLoader::threads() const {
  return impl_->n_threads;
}

void BatchLoader::start(std::int64_t first_index) {
  Impl& m = *impl_;
  if (first_index < 0 || first_index > m.limit)
    throw Error(fmt::format("loader: cannot start at batch {} (a pass has {})", first_index, m.limit));
  std::unique_lock lk(m.mu);
  m.generation.fetch_add(1);
  m.idle_cv.wait(lk, [&] { return m.busy == 0; });  // chunks of the old stream are abandoned
  for (auto& s : m.slots)
    if (s.state != Impl::SlotState::kHeld) s.state = Impl::SlotState::kFree;
  m.fill_k = m.next_out = first_index;
  m.claim_pos = 0;
  m.started = true;
  m.fatal = nullptr;
  lk.unlock();
  m.work_cv.notify_all();
}

const Batch& BatchLoader::next() {
  Impl& m = *impl_;
  if (!m.started) start(0);
  std::unique_lock lk(m.mu);
  if (m.next_out >= m.limit)
    throw Error(fmt::format("loader for {}: the pass's {} batches are done; start() begins another", m.opt.db,
                            m.limit));
  Impl::Slot& s = m.slot_of(m.next_out);
  if (s.state == Impl::SlotState::kHeld)
    throw Error(
        fmt::format("loader for {}: every slot is held (batch {} still is): release() batches before "
                    "asking for more than prefetch + 1",
                    m.opt.db, s.batch.index));
  const auto t0 = std::chrono::steady_clock::now();
  m.ready_cv.wait(
      lk, [&] { return m.fatal || (s.state == Impl::SlotState::kReady && s.batch.index == m.next_out); });
  m.wait_s += seconds_since(t0);
  if (m.fatal) std::rethrow_exception(m.fatal);
  s.state = Impl::SlotState::kHeld;
  ++m.next_out;
  return s.batch;
}

void BatchLoader::release(const Batch& batch) {
  Impl& m = *impl_;
  {
    std::lock_guard lk(m.mu);
    auto it = std::find_if(m.slots.begin(), m.slots.end(),
                           [&](const Impl::Slot& s) { return s.block == batch.block; });
    if (it == m.slots.end() || it->state != Impl::SlotState::kHeld)
      throw Error(
          fmt::format("loader for {}: release() of batch {} that is not held", m.opt.db, batch.index));
    it->state = Impl::SlotState::kFree;
  }
  m.work_cv.notify_all();
}

std::int64_t BatchLoader::corrupt_total() const {
  std::lock_guard lk(impl_->mu);
  return impl_->corrupt_total;
}
std::int64_t BatchLoader::corrupt_records() const {
  std::lock_guard lk(impl_->mu);
  return impl_->corrupt_records;
}
std::vector<std::string> BatchLoader::corrupt_examples() const {
  std::lock_guard lk(impl_->mu);
  return impl_->examples;
}
BatchLoader::Stats BatchLoader::stats() const {
  std::lock_guard lk(impl_->mu);
  return {impl_->decode_s, impl_->wait_s, impl_->images, impl_->decode_cpu_s};
}

}  // namespace incept::data
