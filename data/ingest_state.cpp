// Resume state: options and mean sums (ingest_state.h).
#include "data/ingest_state.h"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/lmdb_reader.h"
#include "engine/check.h"
#include "engine/log.h"

namespace fs = std::filesystem;

namespace incept::data {
namespace {
constexpr char kMagic[8] = {'I', 'N', 'C', 'M', 'E', 'A', 'N', '1'};
fs::path state_dir(const std::string& dir) {
  return fs::path(dir) / ".ingest_state";
}
}  // namespace

void save_resume_options(const std::string& dir, const nlohmann::json& options) {
  fs::create_directories(state_dir(dir));
  std::ofstream(state_dir(dir) / "options.json") << options.dump(2) << "\n";
}

void check_resume_options(const std::string& dir, const nlohmann::json& options) {
  std::ifstream f(state_dir(dir) / "options.json");
  if (!f)
    throw Error(fmt::format(
        "--resume: {} has no .ingest_state/options.json; it was not written by imagenet_ingest", dir));
  const nlohmann::json old = nlohmann::json::parse(f, nullptr, false);
  if (old.is_discarded()) throw Error(fmt::format("--resume: {}/.ingest_state/options.json is corrupt", dir));
  for (const char* key : {"width", "height", "channels", "resize_mode", "encoding", "jpeg_quality"}) {
    if (old.value(key, nlohmann::json()) != options.value(key, nlohmann::json()))
      throw Error(fmt::format(
          "--resume: option {} was {} in the interrupted run but is {} now; "
          "rerun with the same options",
          key, old.value(key, nlohmann::json()).dump(), options.value(key, nlohmann::json()).dump()));
  }
}

void save_crawl_failures(const std::string& dir, const std::vector<Failure>& failures) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& f : failures) j.push_back({{"url", f.what}, {"reason", f.reason}, {"stage", f.stage}});
  fs::create_directories(state_dir(dir));
  std::ofstream(state_dir(dir) / "crawl_failures.json") << j.dump(1) << "\n";
}

std::vector<Failure> load_crawl_failures(const std::string& dir) {
  std::ifstream f(state_dir(dir) / "crawl_failures.json");
  std::vector<Failure> out;
  if (!f) return out;
  const nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
  if (!j.is_array()) return out;
  for (const auto& e : j) out.push_back({e.value("url", ""), e.value("reason", ""), e.value("stage", "")});
  return out;
}

void save_mean_state(const std::string& dir, const MeanAccumulator& mean, std::int64_t db_entries) {
  const fs::path path = state_dir(dir) / "mean_sums.bin", tmp = state_dir(dir) / "mean_sums.bin.tmp";
  fs::create_directories(state_dir(dir));
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    const std::int64_t head[5] = {mean.count(), db_entries, mean.width(), mean.height(), mean.channels()};
    f.write(kMagic, 8);
    f.write(reinterpret_cast<const char*>(head), sizeof head);
    f.write(reinterpret_cast<const char*>(mean.sums().data()), std::streamsize(mean.sums().size() * 8));
    if (!f) throw Error(fmt::format("cannot write {} (disk full?)", tmp.string()));
  }
  if (fs::exists(path)) fs::rename(path, state_dir(dir) / "mean_sums.prev.bin");
  fs::rename(tmp, path);
}

void restore_mean(const std::string& dir, const LmdbWriter& train_db, MeanAccumulator* mean) {
  const std::int64_t entries = train_db.entries();
  for (const char* name : {"mean_sums.bin", "mean_sums.prev.bin"}) {
    std::ifstream f(state_dir(dir) / name, std::ios::binary);
    char magic[8] = {};
    std::int64_t head[5] = {};
    if (f.read(magic, 8) && std::memcmp(magic, kMagic, 8) == 0 &&
        f.read(reinterpret_cast<char*>(head), sizeof head) && head[1] == entries &&
        head[2] == mean->width() && head[3] == mean->height() && head[4] == mean->channels()) {
      std::vector<std::uint64_t> sums(mean->sums().size());
      if (f.read(reinterpret_cast<char*>(sums.data()), std::streamsize(sums.size() * 8))) {
        mean->restore(std::move(sums), head[0]);
        return;
      }
    }
  }
  if (entries == 0) return;
  log_warn("resume: mean sums do not match the {} records in train_db; recomputing them from the records",
           entries);
  LmdbReader reader((fs::path(dir) / "train_db").string());
  DatumImage d;
  while (reader.next(&d)) {
    if (d.bgr.channels == 3)
      for (std::size_t i = 0; i < d.bgr.pixels.size(); i += 3)
        std::swap(d.bgr.pixels[i], d.bgr.pixels[i + 2]);
    mean->add(d.bgr);
  }
}

}  // namespace incept::data
