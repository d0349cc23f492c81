// Sequential LMDB dataset reader (lmdb_reader.h).
#include "data/lmdb_reader.h"

#include <fmt/format.h>
#include <lmdb.h>

#include <filesystem>

#include "engine/check.h"

namespace incept::data {

LmdbReader::LmdbReader(const std::string& dir) : dir_(dir) {
  if (!std::filesystem::exists(std::filesystem::path(dir) / "data.mdb"))
    throw Error(fmt::format("{} is not an LMDB database (no data.mdb)", dir));
  int rc = mdb_env_create(&env_);
  if (!rc) rc = mdb_env_set_maxreaders(env_, 512);
  if (!rc) rc = mdb_env_open(env_, dir.c_str(), MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0664);
  MDB_dbi dbi = 0;
  if (!rc) rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn_);
  if (!rc) rc = mdb_dbi_open(txn_, nullptr, 0, &dbi);
  MDB_stat st;
  if (!rc) rc = mdb_stat(txn_, dbi, &st);
  if (!rc) rc = mdb_cursor_open(txn_, dbi, &cursor_);
  if (rc) {
    if (txn_) mdb_txn_abort(txn_);
    if (env_) mdb_env_close(env_);
    txn_ = nullptr, env_ = nullptr;
    throw Error(fmt::format("cannot read LMDB {}: {}", dir, mdb_strerror(rc)));
  }
  entries_ = std::int64_t(st.ms_entries);
}

LmdbReader::~LmdbReader() {
  if (cursor_) mdb_cursor_close(cursor_);
  if (txn_) mdb_txn_abort(txn_);
  if (env_) mdb_env_close(env_);
}

void LmdbReader::rewind() {
  started_ = false;
}

bool LmdbReader::next(std::string_view* key, std::string_view* value) {
  MDB_val k, v;
  const int rc = mdb_cursor_get(cursor_, &k, &v, started_ ? MDB_NEXT : MDB_FIRST);
  started_ = true;
  if (rc == MDB_NOTFOUND) return false;
  if (rc) throw Error(fmt::format("reading LMDB {}: {}", dir_, mdb_strerror(rc)));
  *key = {static_cast<const char*>(k.mv_data), k.mv_size};
  *value = {static_cast<const char*>(v.mv_data), v.mv_size};
  return true;
}

bool LmdbReader::next(DatumImage* out, std::string* key) {
  std::string_view k, v;
  if (!next(&k, &v)) return false;
  try {
    *out = decode_datum(std::string(v));
  } catch (const Error& e) {
    throw Error(fmt::format("{}: record {}: {}", dir_, k, e.what()));
  }
  if (key) key->assign(k);
  return true;
}

}  // namespace incept::data
