// The training loader (data/loader.h) on real LMDBs written in the test from Fashion-MNIST
// images (Debian's dataset-fashion-mnist) as JPEG, PNG and raw Datums, gray and colour:
// pixels against decode_datum, the sample order and augmentation contract (reproducible,
// resumable, rank-splittable), validation padding, corrupt records and bad databases.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <set>

#include "data/datum.h"
#include "data/idx.h"
#include "data/lmdb_reader.h"
#include "data/lmdb_writer.h"
#include "data/loader.h"
#include "data/record_decoder.h"
#include "testing/test_util.h"

namespace incept::data {
namespace {

using incept::testing::TempDir;

struct Fmnist {
  IdxArray images, labels;
};
const Fmnist* fmnist() {
  static const Fmnist* data = []() -> const Fmnist* {
    const std::string dir = fashion_mnist_dir();
    if (!std::ifstream(dir + "/t10k-images-idx3-ubyte.gz")) return nullptr;
    return new Fmnist{read_idx(dir + "/t10k-images-idx3-ubyte.gz"),
                      read_idx(dir + "/t10k-labels-idx1-ubyte.gz")};
  }();
  return data;
}
#define REQUIRE_FMNIST() \
  if (!fmnist()) GTEST_SKIP() << "dataset-fashion-mnist not installed"

int fm_label(std::int64_t i) {
  return fmnist()->labels.values[std::size_t(i)];
}
// Image i of the t10k set: gray, or coloured per channel and position (still a real picture).
Image fm_image(std::int64_t i, bool colour) {
  Image g = idx_image(fmnist()->images, i);
  if (!colour) return g;
  Image c(g.width, g.height, 3);
  for (int y = 0; y < g.height; ++y)
    for (int x = 0; x < g.width; ++x) {
      const int v = g.row(y)[x];
      std::uint8_t* p = c.row(y) + 3 * x;
      p[0] = std::uint8_t(v);
      p[1] = std::uint8_t(std::min(255, (3 * v + 8 * x) / 4));
      p[2] = std::uint8_t(std::max(0, 255 - v / 2 - 3 * y));
    }
  return c;
}

// Writes records [first, first + count) of t10k as "%08d_<label>" keys; returns the values.
std::vector<std::string> write_db(const std::filesystem::path& dir, int count, Encoding enc, bool colour,
                                  int first = 0) {
  LmdbWriter w(dir.string(), std::size_t(64) << 20);
  std::vector<LmdbWriter::Record> recs;
  std::vector<std::string> values;
  for (int i = 0; i < count; ++i) {
    const int label = fm_label(first + i);
    values.push_back(make_datum(fm_image(first + i, colour), label, enc));
    recs.emplace_back(datum_key(i, label), values.back());
  }
  w.write_batch(recs);
  return values;
}

// What Caffe decodes from an encoded record: OpenCV's imdecode (BGR, or gray), HWC.
std::vector<std::uint8_t> opencv_decode(const std::string& value, int flags) {
  DatumFields d;
  std::string error;
  EXPECT_TRUE(
      parse_datum_fields(reinterpret_cast<const std::uint8_t*>(value.data()), value.size(), &d, &error));
  const cv::Mat m =
      cv::imdecode(cv::Mat(1, int(d.data_size), CV_8UC1, const_cast<std::uint8_t*>(d.data)), flags);
  return std::vector<std::uint8_t>(m.data, m.data + m.total() * m.elemSize());
}

// Every record of a DB in key order: key, value.
std::vector<std::pair<std::string, std::string>> read_all(const std::filesystem::path& dir) {
  LmdbReader r(dir.string());
  std::vector<std::pair<std::string, std::string>> out;
  std::string_view k, v;
  while (r.next(&k, &v)) out.emplace_back(std::string(k), std::string(v));
  return out;
}

LoaderOptions train_options(const std::filesystem::path& db, int batch, int crop = 0) {
  LoaderOptions o;
  o.db = db.string();
  o.batch = batch;
  o.crop = crop;
  o.mirror = crop > 0;
  o.seed = 7;
  o.threads = 2;
  return o;
}

// A copy of a batch (pixels, crops, labels), to compare batches of different loaders.
struct Copy {
  std::vector<std::uint8_t> pixels;
  std::vector<CropParams> crops;
  std::vector<std::int32_t> labels;
  int n_valid = 0;
};
Copy copy_of(const Batch& b, std::size_t image_bytes) {
  Copy c;
  c.pixels.assign(b.pixels, b.pixels + image_bytes * std::size_t(b.n));
  c.crops.assign(b.crops, b.crops + b.n);
  c.labels.assign(b.labels, b.labels + b.n);
  c.n_valid = b.n_valid;
  return c;
}
bool same(const Copy& a, const Copy& b) {
  if (a.crops.size() != b.crops.size()) return false;
  for (std::size_t i = 0; i < a.crops.size(); ++i)
    if (a.crops[i].y0 != b.crops[i].y0 || a.crops[i].x0 != b.crops[i].x0 ||
        a.crops[i].mirror != b.crops[i].mirror)
      return false;
  return a.pixels == b.pixels && a.labels == b.labels && a.n_valid == b.n_valid;
}
std::vector<Copy> take(BatchLoader& l, int count, std::int64_t first = 0) {
  l.start(first);
  std::vector<Copy> out;
  const std::size_t image_bytes = std::size_t(l.height()) * l.width() * l.channels();
  for (int i = 0; i < count; ++i) {
    const Batch& b = l.next();
    EXPECT_EQ(b.index, first + i);
    out.push_back(copy_of(b, image_bytes));
    l.release(b);
  }
  return out;
}

// ---- pixels and labels ------------------------------------------------------------

struct EncodingCase {
  Encoding enc;
  bool colour;
};
class LoaderPixels : public ::testing::TestWithParam<EncodingCase> {};

// A val pass returns every record in key order, decoded exactly like decode_datum (PNG, raw,
// and JPEG with the fast DCT it uses) and, with libjpeg's accurate default, exactly like
// OpenCV's imdecode (what Caffe's Data layer does).
TEST_P(LoaderPixels, ValPassMatchesDecodeDatumAndOpenCV) {
  REQUIRE_FMNIST();
  const auto [enc, colour] = GetParam();
  TempDir tmp("loader_px");
  write_db(tmp / "db", 70, enc, colour);
  const auto records = read_all(tmp / "db");
  for (bool accurate : {true, false}) {
    LoaderOptions o = train_options(tmp / "db", 16);
    o.mode = LoaderMode::kVal;
    o.accurate_jpeg = accurate;
    BatchLoader l(o);
    ASSERT_EQ(l.height(), 28);
    ASSERT_EQ(l.width(), 28);
    ASSERT_EQ(l.channels(), colour ? 3 : 1);
    ASSERT_EQ(l.records(), 70);
    ASSERT_EQ(l.batches_per_pass(), 5);
    const std::size_t image_bytes = 28 * 28 * std::size_t(l.channels());
    for (std::int64_t k = 0; k < l.batches_per_pass(); ++k) {
      const Batch& b = l.next();
      for (int j = 0; j < b.n_valid; ++j) {
        const std::size_t r = std::size_t(k * 16 + j);
        const DatumImage ref = decode_datum(records[r].second);
        ASSERT_EQ(b.labels[j], ref.label);
        ASSERT_EQ(ref.bgr.size(), image_bytes);
        const std::uint8_t* px = b.pixels + image_bytes * std::size_t(j);
        if (enc == Encoding::kJpeg && accurate) {
          const auto cv = opencv_decode(records[r].second, cv::IMREAD_UNCHANGED);
          ASSERT_EQ(cv.size(), image_bytes);
          ASSERT_EQ(0, std::memcmp(px, cv.data(), image_bytes)) << "record " << r;
        } else {
          ASSERT_EQ(0, std::memcmp(px, ref.bgr.pixels.data(), image_bytes)) << "record " << r;
        }
      }
      l.release(b);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Encodings, LoaderPixels,
    ::testing::Values(EncodingCase{Encoding::kJpeg, true}, EncodingCase{Encoding::kJpeg, false},
                      EncodingCase{Encoding::kPng, true}, EncodingCase{Encoding::kPng, false},
                      EncodingCase{Encoding::kNone, true}, EncodingCase{Encoding::kNone, false}),
    [](const auto& info) {
      return std::string(encoding_name(info.param.enc)) + (info.param.colour ? "_colour" : "_gray");
    });

// Caffe's convert_imageset: keys "%08d_<path>", encoded records with channels/height/width
// left 0 (the file's header says), label in the Datum.
TEST(Loader, ConvertImagesetKeysAndHeaderlessDatums) {
  REQUIRE_FMNIST();
  TempDir tmp("loader_caffe");
  std::vector<std::string> files;
  {
    LmdbWriter w((tmp / "db").string());
    std::vector<LmdbWriter::Record> recs;
    for (int i = 0; i < 40; ++i) {
      const Image img = fm_image(i, i % 2 == 0);  // mixed gray and colour files, as a folder may hold
      files.push_back(i % 3 ? encode_jpeg(img, 90) : encode_png(img));
      std::string value;
      make_encoded_datum(files.back(), 0, 0, 0, fm_label(i), &value);
      recs.emplace_back(fmt::format("{:08d}_class{}/img_{}.JPEG", i, fm_label(i), i), value);
    }
    w.write_batch(recs);
  }
  LoaderOptions o = train_options(tmp / "db", 8);
  o.mode = LoaderMode::kVal;
  BatchLoader l(o);
  EXPECT_EQ(l.channels(), 3);  // the first record's file is colour
  for (std::int64_t k = 0; k < l.batches_per_pass(); ++k) {
    const Batch& b = l.next();
    for (int j = 0; j < b.n; ++j) {
      const int i = int(k) * 8 + j;
      EXPECT_EQ(b.labels[j], fm_label(i));
      // Gray files come out as B = G = R, as OpenCV's colour decode gives them.
      std::string value;
      make_encoded_datum(files[std::size_t(i)], 0, 0, 0, 0, &value);
      const auto cv = opencv_decode(value, cv::IMREAD_COLOR);
      ASSERT_EQ(cv.size(), 28u * 28 * 3);
      EXPECT_EQ(0, std::memcmp(b.pixels + cv.size() * std::size_t(j), cv.data(), cv.size()))
          << "record " << i;
    }
    l.release(b);
  }
  EXPECT_EQ(l.corrupt_total(), 0);
}

// ---- order and augmentation -------------------------------------------------------

TEST(SampleOrder, PermutationPerEpochAndReproducible) {
  for (std::int64_t n : {1, 2, 7, 1000}) {
    SampleOrder a(n, 42, true), b(n, 42, true), other(n, 43, true), plain(n, 42, false);
    std::vector<std::vector<std::int64_t>> epochs(3);
    for (std::int64_t s = 0; s < 3 * n; ++s) epochs[std::size_t(s / n)].push_back(a.record(s));
    for (const auto& e : epochs) {
      std::vector<std::int64_t> sorted = e;
      std::sort(sorted.begin(), sorted.end());
      for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(sorted[std::size_t(i)], i);
    }
    if (n == 1000) {
      EXPECT_NE(epochs[0], epochs[1]);
      EXPECT_NE(epochs[1], epochs[2]);
      EXPECT_NE(epochs[0], other.permutation(0));
    }
    // Random access in any order (a resume, another rank) gives the same records.
    for (std::int64_t s = 3 * n - 1; s >= 0; s -= 3)
      EXPECT_EQ(b.record(s), epochs[std::size_t(s / n)][std::size_t(s % n)]);
    EXPECT_EQ(a.permutation(1), epochs[1]);
    for (std::int64_t s = 0; s < 2 * n; ++s) EXPECT_EQ(plain.record(s), s % n);
  }
}

TEST(SampleOrder, CropRangesAndMirrorFrequency) {
  std::set<int> ys, xs;
  int mirrors = 0;
  const int count = 20000;
  for (int s = 0; s < count; ++s) {
    const CropParams c = train_crop(5, s, 28, 30, 20, true);
    ASSERT_GE(c.y0, 0);
    ASSERT_LE(c.y0, 8);
    ASSERT_GE(c.x0, 0);
    ASSERT_LE(c.x0, 10);
    ys.insert(c.y0), xs.insert(c.x0);
    mirrors += c.mirror;
    const CropParams again = train_crop(5, s, 28, 30, 20, true);
    ASSERT_TRUE(again.y0 == c.y0 && again.x0 == c.x0 && again.mirror == c.mirror);
  }
  EXPECT_EQ(ys.size(), 9u);
  EXPECT_EQ(xs.size(), 11u);
  EXPECT_NEAR(double(mirrors) / count, 0.5, 0.02);
  EXPECT_EQ(train_crop(5, 3, 28, 28, 0, false).mirror, 0);
  const CropParams c = center_crop(28, 30, 20);
  EXPECT_EQ(c.y0, 4);
  EXPECT_EQ(c.x0, 5);
  EXPECT_EQ(c.mirror, 0);
}

// Train batch k holds samples k * B + j: labels and pixels follow SampleOrder across epochs,
// every record once per epoch, crops within range and mirrored about half the time.
TEST(Loader, TrainStreamFollowsSampleOrder) {
  REQUIRE_FMNIST();
  TempDir tmp("loader_train");
  write_db(tmp / "db", 60, Encoding::kPng, true);
  const auto records = read_all(tmp / "db");
  BatchLoader l(train_options(tmp / "db", 12, 20));
  SampleOrder order(60, 7, true);
  const std::size_t image_bytes = 28 * 28 * 3;
  std::map<std::int64_t, int> seen_epoch0;
  int mirrors = 0, total = 0;
  l.start(0);
  for (std::int64_t k = 0; k < 15; ++k) {  // 3 epochs
    const Batch& b = l.next();
    ASSERT_EQ(b.index, k);
    ASSERT_EQ(b.n, 12);
    ASSERT_EQ(b.n_valid, 12);
    for (int j = 0; j < b.n; ++j) {
      const std::int64_t s = k * 12 + j, r = order.record(s);
      if (s < 60) ++seen_epoch0[r];
      const DatumImage ref = decode_datum(records[std::size_t(r)].second);
      ASSERT_EQ(b.labels[j], ref.label);
      ASSERT_EQ(0, std::memcmp(b.pixels + image_bytes * std::size_t(j), ref.bgr.pixels.data(), image_bytes));
      ASSERT_LE(b.crops[j].y0, 8);
      ASSERT_LE(b.crops[j].x0, 8);
      mirrors += b.crops[j].mirror, ++total;
    }
    l.release(b);
  }
  EXPECT_EQ(seen_epoch0.size(), 60u);
  EXPECT_NEAR(double(mirrors) / total, 0.5, 0.12);
  EXPECT_GE(l.stats().images, 15 * 12);  // and the prefetched ones
}

TEST(Loader, SameSeedSameBatchesWhateverTheThreads) {
  REQUIRE_FMNIST();
  TempDir tmp("loader_seed");
  write_db(tmp / "db", 50, Encoding::kJpeg, true);
  LoaderOptions o = train_options(tmp / "db", 16, 24);
  o.threads = 1;
  BatchLoader a(o);
  o.threads = 3;
  o.prefetch = 1;
  BatchLoader b(o);
  o.seed = 8;
  BatchLoader c(o);
  const auto ra = take(a, 8), rb = take(b, 8), rc = take(c, 8);
  for (int k = 0; k < 8; ++k) EXPECT_TRUE(same(ra[std::size_t(k)], rb[std::size_t(k)])) << "batch " << k;
  int differ = 0;
  for (int k = 0; k < 8; ++k) differ += !same(ra[std::size_t(k)], rc[std::size_t(k)]);
  EXPECT_EQ(differ, 8);
}

TEST(Loader, ResumeGivesTheSameBatches) {
  REQUIRE_FMNIST();
  TempDir tmp("loader_resume");
  write_db(tmp / "db", 45, Encoding::kNone, true);
  BatchLoader a(train_options(tmp / "db", 10, 22));
  const auto from0 = take(a, 14);
  BatchLoader b(train_options(tmp / "db", 10, 22));
  const auto from9 = take(b, 5, 9);
  for (int i = 0; i < 5; ++i)
    EXPECT_TRUE(same(from0[std::size_t(9 + i)], from9[std::size_t(i)])) << "batch " << 9 + i;
  // start() on a running loader restarts the stream too, also while a batch is held.
  const Batch& held = b.next();
  b.start(3);
  const auto again = take(b, 2, 3);
  EXPECT_TRUE(same(again[0], from0[3]));
  EXPECT_TRUE(same(again[1], from0[4]));
  b.release(held);
}

// Two ranks (offsets 0 and B/2 of a global batch B) together give the single loader's batch.
TEST(Loader, RankSplitTogetherGivesTheGlobalBatch) {
  REQUIRE_FMNIST();
  TempDir tmp("loader_ranks");
  write_db(tmp / "db", 50, Encoding::kPng, false);
  for (LoaderMode mode : {LoaderMode::kTrain, LoaderMode::kVal}) {
    LoaderOptions o = train_options(tmp / "db", 16, 20);
    o.mode = mode;
    BatchLoader whole(o);
    o.batch = 8, o.global_batch = 16;
    BatchLoader r0(o);
    o.rank_offset = 8;
    BatchLoader r1(o);
    EXPECT_EQ(r1.batches_per_pass(), 4);
    const auto w = take(whole, 4), a = take(r0, 4), b = take(r1, 4);
    const std::size_t half = 8 * 28 * 28;
    for (std::size_t k = 0; k < 4; ++k) {
      Copy joined = a[k];
      joined.pixels.insert(joined.pixels.end(), b[k].pixels.begin(), b[k].pixels.end());
      joined.crops.insert(joined.crops.end(), b[k].crops.begin(), b[k].crops.end());
      joined.labels.insert(joined.labels.end(), b[k].labels.begin(), b[k].labels.end());
      joined.n_valid = a[k].n_valid + b[k].n_valid;
      EXPECT_TRUE(same(joined, w[k])) << "batch " << k;
      EXPECT_EQ(a[k].pixels.size(), half);
    }
    if (mode == LoaderMode::kVal) {  // 50 = 3 * 16 + 2: the last global batch has 2 real images
      EXPECT_EQ(a[3].n_valid, 2);
      EXPECT_EQ(b[3].n_valid, 0);
    }
  }
}

TEST(Loader, ValPassPadsTheLastBatch) {
  REQUIRE_FMNIST();
  TempDir tmp("loader_val");
  write_db(tmp / "db", 37, Encoding::kPng, true);
  LoaderOptions o = train_options(tmp / "db", 16, 20);
  o.mode = LoaderMode::kVal;
  o.mirror = true;  // ignored in val
  BatchLoader l(o);
  ASSERT_EQ(l.batches_per_pass(), 3);
  const std::size_t image_bytes = 28 * 28 * 3;
  for (int pass = 0; pass < 2; ++pass) {
    l.start(0);
    for (std::int64_t k = 0; k < 3; ++k) {
      const Batch& b = l.next();
      EXPECT_EQ(b.index, k);
      EXPECT_EQ(b.n_valid, k < 2 ? 16 : 5);
      for (int j = 0; j < b.n; ++j) {
        EXPECT_EQ(b.crops[j].y0, 4);
        EXPECT_EQ(b.crops[j].x0, 4);
        EXPECT_EQ(b.crops[j].mirror, 0);
        if (j < b.n_valid) {
          EXPECT_EQ(b.labels[j], fm_label(k * 16 + j));
        } else {
          EXPECT_EQ(b.labels[j], -1);
          const std::uint8_t* px = b.pixels + image_bytes * std::size_t(j);
          EXPECT_TRUE(std::all_of(px, px + image_bytes, [](std::uint8_t v) { return v == 0; }));
        }
      }
      l.release(b);
    }
    EXPECT_THROW(l.next(), Error);
  }
  EXPECT_EQ(l.stats().images, 74);
}

// ---- blocks, slots, threads -------------------------------------------------------

TEST(Loader, OneBlockPerSlotFromTheAllocator) {
  REQUIRE_FMNIST();
  TempDir tmp("loader_alloc");
  write_db(tmp / "db", 20, Encoding::kNone, true);
  std::atomic<int> allocs{0}, frees{0};
  HostAllocator a{[&](std::size_t bytes) {
                    ++allocs;
                    return std::malloc(bytes);
                  },
                  [&](void* p) {
                    ++frees;
                    std::free(p);
                  }};
  {
    LoaderOptions o = train_options(tmp / "db", 6, 24);
    o.prefetch = 2;
    BatchLoader l(o, a);
    EXPECT_EQ(allocs.load(), 3);
    const Batch& b = l.next();
    const auto* base = static_cast<const std::uint8_t*>(b.block);
    EXPECT_EQ(b.pixels, base);
    const auto* crops = reinterpret_cast<const std::uint8_t*>(b.crops);
    const auto* labels = reinterpret_cast<const std::uint8_t*>(b.labels);
    EXPECT_GE(crops, base + 6 * 28 * 28 * 3);
    EXPECT_GE(labels, crops + 6 * sizeof(CropParams));
    EXPECT_EQ(labels + 6 * sizeof(std::int32_t), base + b.block_bytes);
    // Holding every slot and asking for more is an error, not a hang.
    const Batch& b1 = l.next();
    const Batch& b2 = l.next();
    EXPECT_THROW(l.next(), Error);
    l.release(b1);
    EXPECT_THROW(l.release(b1), Error);
    l.release(b2);
    l.release(b);
    EXPECT_EQ(l.next().index, 3);
  }  // destroyed holding batch 3, threads mid-stream
  EXPECT_EQ(frees.load(), 3);
}

TEST(Loader, DestructionMidPassDoesNotHang) {
  REQUIRE_FMNIST();
  TempDir tmp("loader_stop");
  write_db(tmp / "db", 64, Encoding::kJpeg, true);
  for (int i = 0; i < 20; ++i) {
    LoaderOptions o = train_options(tmp / "db", 32, 20);
    o.threads = 1 + i % 3;
    BatchLoader l(o);
    if (i % 2) l.release(l.next());
    if (i % 4 == 1) l.next();
  }
  LoaderOptions o = train_options(tmp / "db", 32);
  BatchLoader never_started(o);
}

// ---- corrupt records and bad databases ----------------------------------------------

TEST(Loader, CorruptRecordsAreReplacedAndCounted) {
  REQUIRE_FMNIST();
  TempDir tmp("loader_corrupt");
  write_db(tmp / "db", 30, Encoding::kJpeg, true);
  {
    LmdbWriter w((tmp / "db").string());
    // Keys sort between the good ones: "00000005_x" after "00000005_<label>".
    const std::string jpeg = encode_jpeg(fm_image(7, true), 90);
    std::string truncated;
    make_encoded_datum(jpeg.substr(0, jpeg.size() - 40), 3, 28, 28, 1, &truncated);
    const std::string big = make_datum(Image(32, 32, 3), 1, Encoding::kPng);
    std::string not_image;
    make_encoded_datum("GIF89a not an image", 3, 28, 28, 1, &not_image);
    w.write_batch({{"00000005_x", "garbage that is no protobuf \xff\xff\xff"},
                   {"00000007_x", truncated},
                   {"00000011_x", big},
                   {"00000013_x", not_image},
                   {"00000013_y", make_datum(fm_image(0, false), 2, Encoding::kNone)}});  // gray raw
  }
  const auto records = read_all(tmp / "db");
  ASSERT_EQ(records.size(), 35u);
  std::set<std::size_t> bad;
  for (std::size_t r = 0; r < records.size(); ++r)
    if (records[r].first.back() == 'x' || records[r].first.back() == 'y') bad.insert(r);
  ASSERT_EQ(bad.size(), 5u);

  LoaderOptions o = train_options(tmp / "db", 7);
  o.mode = LoaderMode::kVal;
  o.accurate_jpeg = false;  // exact against decode_datum
  BatchLoader l(o);
  int corrupt = 0;
  const std::size_t image_bytes = 28 * 28 * 3;
  for (std::int64_t k = 0; k < l.batches_per_pass(); ++k) {
    const Batch& b = l.next();
    corrupt += b.corrupt;
    for (int j = 0; j < b.n_valid; ++j) {
      std::size_t r = std::size_t(k * 7 + j);
      while (bad.count(r)) r = (r + 1) % records.size();  // replaced by the next good record
      const DatumImage ref = decode_datum(records[r].second);
      EXPECT_EQ(b.labels[j], ref.label) << "position " << k * 7 + j;
      EXPECT_EQ(0, std::memcmp(b.pixels + image_bytes * std::size_t(j), ref.bgr.pixels.data(), image_bytes));
    }
    l.release(b);
  }
  // 00000013_x and _y are adjacent: the first is counted when read and when skipped for its neighbour.
  EXPECT_EQ(corrupt, 6);
  EXPECT_EQ(l.corrupt_total(), 6);
  EXPECT_EQ(l.corrupt_records(), 5);
  const auto examples = l.corrupt_examples();
  ASSERT_EQ(examples.size(), 5u);
  std::string all;
  for (const auto& e : examples) all += e + "\n";
  EXPECT_NE(all.find("00000005_x"), std::string::npos) << all;
  EXPECT_NE(all.find("not a caffe.Datum"), std::string::npos) << all;
  EXPECT_NE(all.find("truncated"), std::string::npos) << all;
  EXPECT_NE(all.find("32x32x3"), std::string::npos) << all;

  // Training over many epochs never stops; every read of a bad record is counted.
  BatchLoader t(train_options(tmp / "db", 8, 20));
  take(t, 30);
  EXPECT_GE(t.corrupt_total(), 5 * 6);
  EXPECT_EQ(t.corrupt_records(), 5);
}

TEST(Loader, ShapeFromTheFirstGoodRecordOrTheOptions) {
  REQUIRE_FMNIST();
  TempDir tmp("loader_shape");
  write_db(tmp / "db", 10, Encoding::kPng, true);
  {
    LmdbWriter w((tmp / "db").string());
    w.write_batch({{"00000000_0", "broken"}});  // the first key no longer decodes
  }
  LoaderOptions o = train_options(tmp / "db", 4);
  BatchLoader l(o);
  EXPECT_EQ(l.channels(), 3);
  EXPECT_EQ(l.height(), 28);
  o.height = o.width = 32;  // no record has this size
  EXPECT_THROW(BatchLoader bad(o), Error);
}

TEST(Loader, ClearErrorsForBadDatabasesAndOptions) {
  REQUIRE_FMNIST();
  TempDir tmp("loader_errors");
  auto message = [](const LoaderOptions& o) -> std::string {
    try {
      BatchLoader l(o);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  LoaderOptions o = train_options(tmp / "missing", 4);
  EXPECT_NE(message(o).find("no data.mdb"), std::string::npos) << message(o);
  { LmdbWriter empty((tmp / "empty").string()); }
  o.db = (tmp / "empty").string();
  EXPECT_NE(message(o).find("empty"), std::string::npos) << message(o);
  {
    LmdbWriter w((tmp / "garbage").string());
    w.write_batch({{"00000000_0", "junk"}, {"00000001_0", std::string(100, '\xff')}});
  }
  o.db = (tmp / "garbage").string();
  EXPECT_NE(message(o).find("no record"), std::string::npos) << message(o);
  write_db(tmp / "db", 4, Encoding::kNone, false);
  o.db = (tmp / "db").string();
  o.channels = 2;
  EXPECT_NE(message(o).find("1 or 3"), std::string::npos) << message(o);
  o.channels = 0;
  o.crop = 30;
  EXPECT_NE(message(o).find("larger than the records"), std::string::npos) << message(o);
  o.crop = 0;
  o.global_batch = 6, o.rank_offset = 4;
  EXPECT_NE(message(o).find("global batch"), std::string::npos) << message(o);
  o.global_batch = 0, o.rank_offset = 0, o.batch = 0;
  EXPECT_NE(message(o).find("batch must be positive"), std::string::npos) << message(o);
  std::filesystem::create_directories(tmp / "dataset" / "train_db");
  std::filesystem::copy(tmp / "db", tmp / "dataset" / "train_db", std::filesystem::copy_options::recursive);
  o.db = (tmp / "dataset").string(), o.batch = 4;
  EXPECT_NE(message(o).find("use"), std::string::npos) << message(o);
}

TEST(RecordDecoder, DatumWireFormat) {
  REQUIRE_FMNIST();
  const std::string v = make_datum(fm_image(3, true), 123456, Encoding::kNone);
  DatumFields d;
  std::string err;
  ASSERT_TRUE(parse_datum_fields(reinterpret_cast<const std::uint8_t*>(v.data()), v.size(), &d, &err)) << err;
  EXPECT_EQ(d.channels, 3);
  EXPECT_EQ(d.height, 28);
  EXPECT_EQ(d.width, 28);
  EXPECT_EQ(d.label, 123456);
  EXPECT_FALSE(d.encoded);
  EXPECT_EQ(d.data_size, 28u * 28 * 3);
  const std::string neg = make_datum(fm_image(3, false), -1, Encoding::kPng);
  ASSERT_TRUE(parse_datum_fields(reinterpret_cast<const std::uint8_t*>(neg.data()), neg.size(), &d, &err));
  EXPECT_EQ(d.label, -1);
  EXPECT_TRUE(d.encoded);
  for (std::size_t cut : {std::size_t(1), std::size_t(5), v.size() / 2})
    EXPECT_FALSE(parse_datum_fields(reinterpret_cast<const std::uint8_t*>(v.data()), cut, &d, &err)) << cut;
}

}  // namespace
}  // namespace incept::data
