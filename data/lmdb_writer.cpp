// Batched LMDB writes with map growth (lmdb_writer.h).
#include "data/lmdb_writer.h"

#include <fmt/format.h>
#include <lmdb.h>

#include <filesystem>

#include "engine/check.h"
#include "engine/log.h"

namespace incept::data {
namespace {
[[noreturn]] void lmdb_fail(const std::string& dir, const char* what, int rc) {
  throw Error(
      fmt::format("LMDB {} failed for {}: {}. Records committed before this point are intact; "
                  "fix the cause (e.g. free disk space) and run again with --resume.",
                  what, dir, mdb_strerror(rc)));
}
}  // namespace

LmdbWriter::LmdbWriter(std::string dir, std::size_t initial_map_bytes)
    : dir_(std::move(dir)), map_size_(initial_map_bytes) {
  std::filesystem::create_directories(dir_);
  int rc = mdb_env_create(&env_);
  if (rc) lmdb_fail(dir_, "env_create", rc);
  if ((rc = mdb_env_set_mapsize(env_, map_size_)) || (rc = mdb_env_open(env_, dir_.c_str(), 0, 0664))) {
    mdb_env_close(env_);
    env_ = nullptr;
    lmdb_fail(dir_, "open", rc);
  }
  // A reopened database keeps its own (possibly grown) map size.
  MDB_envinfo info;
  if (mdb_env_info(env_, &info) == 0 && info.me_mapsize > map_size_) map_size_ = info.me_mapsize;
  MDB_txn* txn = nullptr;
  if ((rc = mdb_txn_begin(env_, nullptr, 0, &txn))) lmdb_fail(dir_, "txn_begin", rc);
  MDB_dbi dbi;
  if ((rc = mdb_dbi_open(txn, nullptr, 0, &dbi))) {
    mdb_txn_abort(txn);
    lmdb_fail(dir_, "dbi_open", rc);
  }
  if ((rc = mdb_txn_commit(txn))) lmdb_fail(dir_, "commit", rc);
  dbi_ = dbi;
}

LmdbWriter::~LmdbWriter() {
  if (env_) mdb_env_close(env_);
}

void LmdbWriter::write_batch(const std::vector<Record>& records) {
  if (records.empty()) return;
  for (;;) {
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc) lmdb_fail(dir_, "txn_begin", rc);
    for (const auto& [k, v] : records) {
      MDB_val key{k.size(), const_cast<char*>(k.data())};
      MDB_val val{v.size(), const_cast<char*>(v.data())};
      if ((rc = mdb_put(txn, dbi_, &key, &val, 0))) break;
    }
    if (rc == 0)
      rc = mdb_txn_commit(txn);
    else
      mdb_txn_abort(txn);
    if (rc == 0) return;
    if (rc != MDB_MAP_FULL) lmdb_fail(dir_, "write", rc);
    // Grow and retry the whole batch (the aborted transaction left nothing behind).
    map_size_ *= 2;
    if ((rc = mdb_env_set_mapsize(env_, map_size_))) lmdb_fail(dir_, "set_mapsize", rc);
    ++grows_;
    log_debug("{}: LMDB map grown to {} MiB", dir_, map_size_ >> 20);
  }
}

std::int64_t LmdbWriter::entries() const {
  MDB_stat st;
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn)) return 0;
  const int rc = mdb_stat(txn, dbi_, &st);
  mdb_txn_abort(txn);
  return rc ? 0 : std::int64_t(st.ms_entries);
}

std::unordered_set<std::string> LmdbWriter::keys() const {
  std::unordered_set<std::string> out;
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn)) return out;
  MDB_cursor* cur = nullptr;
  if (mdb_cursor_open(txn, dbi_, &cur) == 0) {
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
      out.emplace(static_cast<const char*>(k.mv_data), k.mv_size);
    mdb_cursor_close(cur);
  }
  mdb_txn_abort(txn);
  return out;
}

}  // namespace incept::data
