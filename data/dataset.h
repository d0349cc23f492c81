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
  std::string resize_mode;                  // dataset.json's, when present
  bool encoded = false;
  MeanBlob mean;  // CHW BGR floats (empty if no mean.binaryproto)
};

// Opens and checks a dataset folder. Throws incept::Error saying what is missing.
DatasetInfo open_dataset(const std::string& dir);

// The labels the records of an LMDB carry. DIGITS' and imagenet_ingest's keys ("%08d_<label>")
// name the label, so every key is read (keys only: cheap); other keys (Caffe's convert_imageset
// "%08d_<path>") need the Datum, so at most `max_values` records are parsed.
struct LabelScan {
  std::int64_t records = 0;  // records whose label was read
  int min_label = 0, max_label = -1;
  bool from_keys = true;  // every label came from the keys (complete)
};
LabelScan scan_labels(const std::string& db, std::int64_t max_values = 2000);

// The first record's shape (H, W, C) of an LMDB, decoding it. Throws Error if it is unusable.
struct RecordShape {
  int height = 0, width = 0, channels = 0;
  bool encoded = false;
};
RecordShape first_record_shape(const std::string& db);

}  // namespace incept::data
