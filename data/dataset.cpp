// Dataset folder reader (dataset.h).
#include "data/dataset.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/caffe.pb.h"
#include "data/lmdb_reader.h"
#include "engine/check.h"

namespace fs = std::filesystem;

namespace incept::data {

DatasetInfo open_dataset(const std::string& dir) {
  DatasetInfo info;
  info.dir = dir;
  std::ifstream lf(fs::path(dir) / "labels.txt");
  if (!lf)
    throw Error(
        fmt::format("{} is not a dataset folder: no labels.txt (create one with imagenet_ingest)", dir));
  for (std::string line; std::getline(lf, line);)
    if (!line.empty()) info.labels.push_back(line);
  info.train_db = (fs::path(dir) / "train_db").string();
  LmdbReader train(info.train_db);
  info.train_count = train.size();
  if (fs::exists(fs::path(dir) / "val_db" / "data.mdb")) {
    info.val_db = (fs::path(dir) / "val_db").string();
    info.val_count = LmdbReader(info.val_db).size();
  }
  DatumImage first;
  if (train.next(&first)) {
    info.channels = first.bgr.channels, info.height = first.bgr.height, info.width = first.bgr.width;
    info.encoded = first.encoded;
  }
  if (fs::exists(fs::path(dir) / "mean.binaryproto"))
    info.mean = read_mean_blobproto((fs::path(dir) / "mean.binaryproto").string());
  std::ifstream jf(fs::path(dir) / "dataset.json");
  if (jf) {
    try {
      const nlohmann::json j = nlohmann::json::parse(jf);
      if (j.contains("options") && j["options"].contains("resize_mode") &&
          j["options"]["resize_mode"].is_string())
        info.resize_mode = j["options"]["resize_mode"];
    } catch (const std::exception&) {  // dataset.json is informative only
    }
  }
  return info;
}

LabelScan scan_labels(const std::string& db, std::int64_t max_values) {
  LmdbReader r(db);
  LabelScan s;
  std::string_view key, value;
  while (r.next(&key, &value)) {
    std::int64_t index = 0;
    int label = 0;
    if (!parse_datum_key(std::string(key), &index, &label)) {
      s.from_keys = false;
      if (s.records >= max_values) break;
      caffe::Datum d;
      if (!d.ParseFromArray(value.data(), int(value.size()))) continue;  // the loader counts corrupt ones
      label = d.label();
    }
    if (s.records == 0 || label < s.min_label) s.min_label = label;
    if (s.records == 0 || label > s.max_label) s.max_label = label;
    ++s.records;
  }
  return s;
}

RecordShape first_record_shape(const std::string& db) {
  LmdbReader r(db);
  DatumImage first;
  if (!r.next(&first)) throw Error(fmt::format("{} holds no records", db));
  return {first.bgr.height, first.bgr.width, first.bgr.channels, first.encoded};
}

}  // namespace incept::data
