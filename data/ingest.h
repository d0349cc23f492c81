// imagenet_ingest's engine: source -> plan -> (download | read) -> decode -> fit -> encode ->
// LMDB, pipelined over all cores with bounded queues, plus the DIGITS side files (labels.txt,
// train.txt, val.txt, mean.binaryproto, mean.jpg) and dataset.json (options, counts per
// class, every failure with its URL and reason, timings). Bad images are skipped and
// counted; the run fails only when nothing usable remains. Interrupted runs continue with
// resume = true: records already committed are kept, the rest are written once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/datum.h"
#include "data/ingest_plan.h"
#include "data/resize.h"

namespace incept::data {

struct IngestOptions {
  std::string source;      // URL, folder or "path label" text file
  std::string val_source;  // optional separate validation source
  std::string output_dir;
  std::string labels_file;  // text-file sources: class names
  int width = 256;
  int height = 256;
  int channels = 3;
  ResizeMode resize = ResizeMode::kSquash;
  Encoding encoding = Encoding::kJpeg;
  int jpeg_quality = 90;
  PlanOptions plan;
  HttpOptions http;
  int threads = 0;                                    // decode/encode workers; 0: one per core
  int batch_records = 500;                            // records per LMDB transaction
  std::size_t lmdb_map_bytes = std::size_t(1) << 30;  // first map size (grows when full)
  std::int64_t max_pixels = 64'000'000;
  bool resume = false;
  double progress_interval_s = 2.0;
  std::int64_t stop_after_records = -1;  // tests: behave as if interrupted after N commits' worth
};

struct IngestReport {
  std::int64_t train_records = 0;  // in train_db at the end (all runs)
  std::int64_t val_records = 0;
  std::int64_t written_now = 0;  // records written by this run
  std::int64_t skipped_existing = 0;
  std::int64_t failures = 0;  // this run (crawl + download + decode)
  double crawl_seconds = 0;
  double write_seconds = 0;
  double total_seconds = 0;
  double images_per_second = 0;  // written_now / write_seconds
  std::int64_t bytes_downloaded = 0;
  std::vector<HttpFetcher::HostStats> download_hosts;  // how each host's downloads were paced
  bool interrupted = false;
};

// Runs the whole ingest. Throws incept::Error for unusable input (bad source, non-empty
// output without resume, nothing usable) and for write failures (dataset left consistent).
IngestReport run_ingest(const IngestOptions& opt);

// Asks a running ingest to stop after committing what is in the pipeline (signal-safe).
void request_ingest_stop();

}  // namespace incept::data
