// bench_loader: the training loader alone (data/loader.h), no GPU: img/s in total and per
// decode thread from a real LMDB, for several thread counts, next to one thread decoding the
// same records without the loader (the codec's own rate). Process CPU time is reported too,
// so a shared machine's load shows as lost wall time, not as a slower decoder.
//   bench_loader --db DIR [--batch 128] [--threads 1,2,4] [--seconds 5] [--crop 224] [--json F]
//   bench_loader --make-db DIR [--count 5000] [--size 256] [--quality 90]
// --make-db writes N synthetic photographic-like RGB JPEG records (q90, 4:2:0, as DIGITS and
// imagenet_ingest write them) so the loader can be measured where no dataset is at hand.
#include <fmt/format.h>
#include <lmdb.h>
#include <sys/resource.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "data/datum.h"
#include "data/lmdb_reader.h"
#include "data/lmdb_writer.h"
#include "data/loader.h"
#include "data/record_decoder.h"
#include "data/sample_order.h"
#include "incept_commit.h"

namespace {

using incept::data::Image;
using incept::data::mix_hash;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double thread_cpu_s() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}
double process_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}
std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}
double unit(std::uint64_t seed, std::uint64_t a, std::uint64_t b) {
  return double(mix_hash(seed, a, b) >> 11) * 0x1.0p-53;
}

// One octave of value noise: random values on a lattice of spacing `cell`, smoothly
// interpolated.
class Octave {
 public:
  Octave(std::uint64_t seed, int size, int cell)
      : cell_(cell), n_(size / cell + 2), v_(std::size_t(n_) * n_) {
    for (int j = 0; j < n_; ++j)
      for (int i = 0; i < n_; ++i)
        v_[std::size_t(j) * n_ + i] = unit(seed, std::uint64_t(i), std::uint64_t(j)) - 0.5;
  }
  double at(int x, int y) const {
    const int gx = x / cell_, gy = y / cell_;
    const double fx = double(x % cell_) / cell_, fy = double(y % cell_) / cell_;
    const double sx = fx * fx * (3 - 2 * fx), sy = fy * fy * (3 - 2 * fy);
    const double* r0 = &v_[std::size_t(gy) * n_ + gx];
    const double* r1 = r0 + n_;
    const double top = r0[0] + (r0[1] - r0[0]) * sx, bottom = r1[0] + (r1[1] - r1[0]) * sx;
    return top + (bottom - top) * sy;
  }

 private:
  int cell_, n_;
  std::vector<double> v_;
};

// A photograph-like picture: octaves of noise with a 1/f-like spectrum (luma strong, chroma
// weaker and coarser), a few hard-edged objects and sensor grain, so it compresses like a
// resized ImageNet photo (about 30-40 KB at 256x256 q90 with the default grain).
Image synth(std::uint64_t seed, int size, double grain) {
  std::vector<Octave> luma, cb, cr;
  std::vector<double> amp;
  for (int cell = size / 2, o = 0; cell >= 2; cell /= 2, ++o) {
    luma.emplace_back(seed * 131 + std::uint64_t(o), size, cell);
    cb.emplace_back(seed * 131 + 40 + std::uint64_t(o), size, cell);
    cr.emplace_back(seed * 131 + 80 + std::uint64_t(o), size, cell);
    amp.push_back(std::pow(double(cell) / size, 0.7));
  }
  double tint[3];
  for (int c = 0; c < 3; ++c) tint[c] = 0.7 + 0.6 * unit(seed, 100, std::uint64_t(c));
  struct Disc {
    double x, y, r, v[3];
  } discs[5];
  for (int i = 0; i < 5; ++i) {
    Disc& d = discs[i];
    d.x = unit(seed, 200, std::uint64_t(i)) * size, d.y = unit(seed, 201, std::uint64_t(i)) * size;
    d.r = size * (0.04 + 0.18 * unit(seed, 202, std::uint64_t(i)));
    for (int c = 0; c < 3; ++c) d.v[c] = 255 * unit(seed, 203 + std::uint64_t(c), std::uint64_t(i));
  }
  Image img(size, size, 3);
  for (int y = 0; y < size; ++y) {
    std::uint8_t* row = img.row(y);
    for (int x = 0; x < size; ++x) {
      double l = 0, u = 0, v = 0;
      for (std::size_t o = 0; o < luma.size(); ++o) {
        l += amp[o] * luma[o].at(x, y);
        if (o < 4) u += amp[o] * cb[o].at(x, y), v += amp[o] * cr[o].at(x, y);
      }
      double rgb[3] = {128 + 200 * l + 110 * v, 128 + 200 * l - 50 * u - 50 * v, 128 + 200 * l + 110 * u};
      for (const Disc& d : discs)
        if ((x - d.x) * (x - d.x) + (y - d.y) * (y - d.y) < d.r * d.r)
          for (int c = 0; c < 3; ++c) rgb[c] = 0.3 * rgb[c] + 0.7 * d.v[c] + 60 * l;
      const double g = grain * (unit(seed, 300 + std::uint64_t(y), std::uint64_t(x)) - 0.5);
      for (int c = 0; c < 3; ++c) row[3 * x + c] = std::uint8_t(std::clamp(rgb[c] * tint[c] + g, 0.0, 255.0));
    }
  }
  return img;
}

int make_db(const std::string& dir, std::int64_t count, int size, int quality, double grain, int threads) {
  incept::data::LmdbWriter writer(dir, std::size_t(count) * 80000 + (std::size_t(64) << 20));
  std::vector<incept::data::LmdbWriter::Record> chunk;
  const std::int64_t per_chunk = 512;
  std::size_t bytes = 0;
  const double t0 = now_s();
  for (std::int64_t first = 0; first < count; first += per_chunk) {
    const std::int64_t n = std::min(per_chunk, count - first);
    chunk.assign(std::size_t(n), {});
    std::atomic<std::int64_t> next{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&] {
        for (std::int64_t i; (i = next++) < n;) {
          const std::int64_t id = first + i;
          const int label = int(id % 1000);
          const std::string jpeg =
              incept::data::encode_jpeg(synth(std::uint64_t(id) * 1000003 + 17, size, grain), quality);
          auto& rec = chunk[std::size_t(i)];
          rec.first = incept::data::datum_key(id, label);
          incept::data::make_encoded_datum(jpeg, 3, size, size, label, &rec.second);
        }
      });
    for (auto& t : pool) t.join();
    for (const auto& r : chunk) bytes += r.second.size();
    writer.write_batch(chunk);
  }
  fmt::print("wrote {} records of {}x{} q{} JPEG to {}: {:.1f} KB each, {:.0f} s\n", count, size, size,
             quality, dir, double(bytes) / 1e3 / double(count), now_s() - t0);
  return 0;
}

// One thread, the records straight from LMDB through RecordDecoder: the codec's own rate, in
// images per second of wall time and per second of the thread's CPU time.
struct Rate {
  double wall = 0, cpu = 0;
};
Rate baseline(const std::string& db, int images, bool accurate) {
  incept::data::LmdbReader reader(db);
  std::vector<std::string> values;
  std::string_view k, v;
  while (int(values.size()) < images && reader.next(&k, &v)) values.emplace_back(v);
  incept::data::RecordDecoder dec(accurate);
  const auto shape = dec.probe(reinterpret_cast<const std::uint8_t*>(values[0].data()), values[0].size());
  std::vector<std::uint8_t> out(shape.bytes());
  Rate best;
  for (int rep = 0; rep < 3; ++rep) {
    const double t0 = now_s(), c0 = thread_cpu_s();
    for (const auto& value : values)
      dec.decode(reinterpret_cast<const std::uint8_t*>(value.data()), value.size(), shape, out.data());
    best.wall = std::max(best.wall, double(values.size()) / (now_s() - t0));
    best.cpu = std::max(best.cpu, double(values.size()) / (thread_cpu_s() - c0));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string db, make, json_out;
  std::int64_t count = 5000;
  int batch = 128, crop = 224, size = 256, quality = 90,
      make_threads = int(std::thread::hardware_concurrency());
  double seconds = 5, grain = 48;
  bool sample = false;
  bool fast_jpeg = false;
  std::vector<int> thread_counts{1, 2};
  CLI::App app{"bench_loader: the training loader's img/s from an LMDB (no GPU)"};
  app.add_option("--db", db, "LMDB folder to read (a train_db)");
  app.add_option("--batch", batch, "images per batch")->capture_default_str();
  app.add_option("--threads", thread_counts, "decode thread counts to measure (e.g. 1,2,4,8)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--seconds", seconds, "timed seconds per thread count")->capture_default_str();
  app.add_option("--crop", crop, "crop size (the crops are drawn, not applied: the GPU applies them)")
      ->capture_default_str();
  app.add_flag("--fast-jpeg", fast_jpeg, "fast integer DCT instead of libjpeg's accurate default");
  app.add_option("--make-db", make, "write a synthetic JPEG LMDB here and exit");
  app.add_option("--count", count, "records for --make-db")->capture_default_str();
  app.add_option("--size", size, "image size for --make-db")->capture_default_str();
  app.add_option("--quality", quality, "JPEG quality for --make-db")->capture_default_str();
  app.add_option("--grain", grain, "sensor grain amplitude for --make-db (sets the JPEG size)")
      ->capture_default_str();
  app.add_flag("--sample", sample, "print the JPEG size of a few synthetic images and exit");
  app.add_option("--make-threads", make_threads, "threads for --make-db")->capture_default_str();
  app.add_option("--json", json_out, "also write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);
  try {
    if (sample) {
      double bytes = 0;
      const double t0 = now_s();
      for (int i = 0; i < 16; ++i)
        bytes += double(
            incept::data::encode_jpeg(synth(std::uint64_t(i) * 1000003 + 17, size, grain), quality).size());
      fmt::print("{}x{} q{} grain {}: {:.1f} KB per JPEG, {:.1f} ms per image to make\n", size, size, quality,
                 grain, bytes / 16e3, (now_s() - t0) / 16e-3);
      return 0;
    }
    if (!make.empty()) return make_db(make, count, size, quality, grain, std::max(1, make_threads));
    if (db.empty()) throw incept::Error("give --db DIR (or --make-db DIR to create one)");
    fmt::print("bench_loader {} on {} ({} hardware threads), db {}, batch {}, {} JPEG decode\n",
               INCEPT_GIT_COMMIT, cpu_model(), std::thread::hardware_concurrency(), db, batch,
               fast_jpeg ? "fast" : "accurate");
    const Rate base = baseline(db, 1000, !fast_jpeg);
    fmt::print("one thread, RecordDecoder alone: {:.0f} img/s, {:.0f} img per CPU-second\n", base.wall,
               base.cpu);
    nlohmann::json j{{"commit", INCEPT_GIT_COMMIT},
                     {"cpu", cpu_model()},
                     {"hardware_threads", std::thread::hardware_concurrency()},
                     {"db", db},
                     {"batch", batch},
                     {"jpeg", fast_jpeg ? "fast" : "accurate"},
                     {"decoder_one_thread_img_s", base.wall},
                     {"results", nlohmann::json::array()}};
    // img/s: wall-clock rate of the consumer; per thread: that / threads; decode CPU: seconds of CPU
    // the decode threads got per second (threads on an idle machine); per core: images per second
    // of decode-thread CPU; process CPU: all threads of the process, the consumer's included.
    fmt::print("{:>7} {:>8} {:>11} {:>11} {:>13} {:>12}\n", "threads", "img/s", "img/s/thr", "decode CPU",
               "img/CPU-s/thr", "process CPU");
    for (int threads : thread_counts) {
      incept::data::LoaderOptions o;
      o.db = db;
      o.batch = batch;
      o.crop = crop;
      o.mirror = true;
      o.threads = threads;
      o.accurate_jpeg = !fast_jpeg;
      incept::data::BatchLoader loader(o);
      loader.start(0);
      // Warm-up: one pass over the records and every slot, so the map's and the blocks' first-touch
      // page faults (a one-time cost) stay out of the timed part.
      for (std::int64_t i = 0; i < loader.batches_per_pass() + o.prefetch + 1; ++i)
        loader.release(loader.next());
      const auto s0 = loader.stats();
      const double t0 = now_s(), c0 = process_cpu_s();
      std::int64_t images = 0;
      std::uint64_t checksum = 0;
      while (now_s() - t0 < seconds) {
        const auto& b = loader.next();
        checksum += b.pixels[std::size_t(b.n / 2) * loader.height() * loader.width() * 3 + 7];
        images += b.n;
        loader.release(b);
      }
      const double wall = now_s() - t0, cpu = process_cpu_s() - c0;
      const auto s1 = loader.stats();
      const double decode_cpu = s1.decode_cpu_s - s0.decode_cpu_s;
      const double decoded = double(s1.images - s0.images);
      fmt::print("{:>7} {:>8.0f} {:>11.0f} {:>11.2f} {:>13.0f} {:>12.2f}   (checksum {}, corrupt {})\n",
                 threads, double(images) / wall, double(images) / wall / threads, decode_cpu / wall,
                 decoded / decode_cpu, cpu / wall, checksum % 1000, loader.corrupt_total());
      j["results"].push_back({{"threads", threads},
                              {"img_per_s", double(images) / wall},
                              {"img_per_s_per_thread", double(images) / wall / threads},
                              {"decode_cpu", decode_cpu / wall},
                              {"img_per_cpu_s", decoded / decode_cpu},
                              {"process_cpu", cpu / wall}});
      if (!json_out.empty()) std::ofstream(json_out) << j.dump(1) << "\n";
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_loader: {}\n", e.what());
    return 1;
  }
  return 0;
}
