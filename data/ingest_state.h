// What --resume needs besides train.txt / val.txt: the options of the first run (a resume
// with different sizes or encoding would mix records) and the running mean sums with the entry
// count they cover, saved before every train commit while the previous sums are kept: since the
// commit is atomic, one of the two covers exactly the records a crash leaves, and the resumed
// mean equals an uninterrupted run's. Only when neither does (state lost) are the sums rebuilt
// from the records themselves.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "data/datum.h"
#include "data/image_source.h"
#include "data/lmdb_writer.h"

namespace incept::data {

// <dir>/.ingest_state/options.json
void save_resume_options(const std::string& dir, const nlohmann::json& options);
// Throws incept::Error naming the first option that differs.
void check_resume_options(const std::string& dir, const nlohmann::json& options);

// Crawl and plan failures of the first run (a resume does not crawl again), so that the
// final dataset.json still lists them. <dir>/.ingest_state/crawl_failures.json
void save_crawl_failures(const std::string& dir, const std::vector<Failure>& failures);
std::vector<Failure> load_crawl_failures(const std::string& dir);

// <dir>/.ingest_state/mean_sums.bin (atomic replace); the file it replaces becomes
// mean_sums.prev.bin.
void save_mean_state(const std::string& dir, const MeanAccumulator& mean, std::int64_t db_entries);
// Loads the sums (mean_sums.bin, else mean_sums.prev.bin) that cover exactly the records in
// `train_db`, else rebuilds them by decoding every record (exact for png/none, within JPEG
// error for jpg).
void restore_mean(const std::string& dir, const LmdbWriter& train_db, MeanAccumulator* mean);

}  // namespace incept::data
