// Dataset folder reader (dataset.h).
#include "data/dataset.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>

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
  return info;
}

}  // namespace incept::data
