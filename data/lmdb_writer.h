// An LMDB database written in batches: one transaction per batch, so a crash (Ctrl-C,
// kill -9) leaves every batch either fully present or absent. A full map grows
// (mdb_env_set_mapsize, doubled) and the batch is retried; any other write failure (disk
// full, file size limit) is an incept::Error that says the database is still consistent.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

struct MDB_env;

namespace incept::data {

class LmdbWriter {
 public:
  // Opens (creating if needed) the LMDB directory `dir`. initial_map_bytes: the first map size.
  LmdbWriter(std::string dir, std::size_t initial_map_bytes = std::size_t(1) << 30);
  ~LmdbWriter();
  LmdbWriter(const LmdbWriter&) = delete;
  LmdbWriter& operator=(const LmdbWriter&) = delete;

  using Record = std::pair<std::string, std::string>;  // key, value
  // Puts every record in one transaction (keys already present are overwritten).
  void write_batch(const std::vector<Record>& records);

  std::int64_t entries() const;
  // Every key currently stored (for --resume).
  std::unordered_set<std::string> keys() const;
  std::size_t map_size() const { return map_size_; }
  int map_grows() const { return grows_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  MDB_env* env_ = nullptr;
  unsigned dbi_ = 0;
  std::size_t map_size_;
  int grows_ = 0;
};

}  // namespace incept::data
