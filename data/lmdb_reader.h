// Reads an LMDB dataset (train_db / val_db) in key order, which is the shuffled order the
// records were planned in, as Caffe's Data layer does. Each record decodes to HWC BGR uint8.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "data/datum.h"

struct MDB_env;
struct MDB_txn;
struct MDB_cursor;

namespace incept::data {

class LmdbReader {
 public:
  explicit LmdbReader(const std::string& dir);
  ~LmdbReader();
  LmdbReader(const LmdbReader&) = delete;
  LmdbReader& operator=(const LmdbReader&) = delete;

  std::int64_t size() const { return entries_; }
  // Back to the first key.
  void rewind();
  // The next record (key and raw value), wrapping around is the caller's choice: false at the end.
  bool next(std::string_view* key, std::string_view* value);
  // The next record, decoded. False at the end.
  bool next(DatumImage* out, std::string* key = nullptr);

 private:
  std::string dir_;
  MDB_env* env_ = nullptr;
  MDB_txn* txn_ = nullptr;
  MDB_cursor* cursor_ = nullptr;
  std::int64_t entries_ = 0;
  bool started_ = false;
};

}  // namespace incept::data
