// A dataset folder written by imagenet_ingest (or DIGITS): labels, record counts, the mean
// blob and the LMDB paths, for the trainer's loader.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/datum.h"

namespace incept::data {

struct DatasetInfo {
  std::string dir;
  std::vector<std::string> labels;  // labels.txt, index = label
  std::string train_db, val_db;     // LMDB folders (val_db empty if absent)
  std::int64_t train_count = 0;     // entries in the LMDBs
  std::int64_t val_count = 0;
  int channels = 0, height = 0, width = 0;  // from the first train record
  bool encoded = false;
  MeanBlob mean;  // CHW BGR floats (empty if no mean.binaryproto)
};

// Opens and checks a dataset folder. Throws incept::Error saying what is missing.
DatasetInfo open_dataset(const std::string& dir);

}  // namespace incept::data
