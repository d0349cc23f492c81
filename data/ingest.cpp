// The ingest pipeline (ingest.h). Threads: a feeder walks the plan (skipping keys already
// in the LMDB), submitting URLs to the HTTP fetcher or local paths straight to the work
// queue; a pump moves finished downloads into the work queue; N workers decode, fit and
// encode; the calling thread is the single LMDB writer (one transaction per batch, the mean
// sums saved after each train commit). Every queue is bounded.
#include "data/ingest.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "data/bounded_queue.h"
#include "data/ingest_state.h"
#include "data/lmdb_writer.h"
#include "data/record.h"
#include "engine/check.h"
#include "engine/log.h"

namespace fs = std::filesystem;

namespace incept::data {
namespace {

std::atomic<bool> g_stop{false};

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct WorkItem {
  int db = 0;
  std::int64_t index = 0;
  int label = 0;
  std::string location;
  bool fetched = false;  // body holds the download (or error the reason it failed)
  std::string body;
  std::string error;
};

struct WriteItem {
  int db = 0;
  std::string key, value;
  Image image;  // the fitted image, for the mean (train only)
  bool failed = false;
  Failure failure;
};

std::string read_file(const std::string& path, std::int64_t max_bytes) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ImageError("cannot open file");
  f.seekg(0, std::ios::end);
  const std::int64_t size = f.tellg();
  if (size > max_bytes) throw ImageError(fmt::format("file larger than {} MiB", max_bytes >> 20));
  f.seekg(0);
  std::string s(std::size_t(std::max<std::int64_t>(size, 0)), '\0');
  f.read(s.data(), size);
  if (!f) throw ImageError("read error");
  return s;
}

// Decode -> fit -> encode one image into a serialized Datum.
void process(const IngestOptions& opt, WorkItem& w, WriteItem& out) {
  out.db = w.db;
  out.key = datum_key(w.index, w.label);
  try {
    if (w.fetched && !w.error.empty()) throw Error(w.error);
    const std::string bytes = w.fetched ? std::move(w.body) : read_file(w.location, opt.http.max_bytes);
    const std::uint64_t seed =
        opt.plan.seed ^ (std::uint64_t(w.db) << 60) ^ std::uint64_t(w.index) * 0x2545F4914F6CDD1Dull;
    const RecordOptions ro{opt.width,    opt.height,       opt.channels,  opt.resize,
                           opt.encoding, opt.jpeg_quality, opt.max_pixels};
    make_record(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), w.label, seed, ro,
                &out.value, w.db == 0 ? &out.image : nullptr);
  } catch (const std::exception& e) {
    out.failed = true;
    out.failure = {w.location, e.what(), w.fetched && !w.error.empty() ? "download" : "decode"};
  }
}

nlohmann::json options_json(const IngestOptions& o) {
  return {{"source", o.source},
          {"val_source", o.val_source},
          {"width", o.width},
          {"height", o.height},
          {"channels", o.channels},
          {"resize_mode", resize_mode_name(o.resize)},
          {"encoding", encoding_name(o.encoding)},
          {"jpeg_quality", o.jpeg_quality},
          {"pct_val", o.plan.pct_val},
          {"min_per_class", o.plan.min_per_class},
          {"max_per_class", o.plan.max_per_class},
          {"seed", o.plan.seed},
          {"backend", "lmdb"},
          {"image_channel_order", o.channels == 3 ? "BGR" : "GRAY"}};
}

std::string reason_category(const std::string& reason) {
  const auto cut = reason.find_first_of(":(");
  std::string c = reason.substr(0, cut);
  while (!c.empty() && c.back() == ' ') c.pop_back();
  return c;
}

bool dir_non_empty(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec) && fs::is_directory(p, ec) &&
         fs::directory_iterator(p, ec) != fs::directory_iterator();
}

}  // namespace

void request_ingest_stop() {
  g_stop.store(true);
}

IngestReport run_ingest(const IngestOptions& opt) {
  const auto t_start = Clock::now();
  g_stop = false;
  IngestReport rep;
  const fs::path out(opt.output_dir);
  const nlohmann::json options = options_json(opt);
  const bool resuming = opt.resume && fs::exists(out / "train.txt");
  if (!opt.resume && dir_non_empty(out))
    throw Error(
        fmt::format("output folder {} is not empty: use --resume to continue an interrupted run, "
                    "or choose an empty or new folder",
                    out.string()));
  if (opt.resume && dir_non_empty(out) && !resuming)
    throw Error(
        fmt::format("--resume: {} holds no train.txt from an earlier run; nothing to resume", out.string()));

  // ---- plan --------------------------------------------------------------------
  Plan plan;
  std::vector<Failure> failures;
  std::vector<HttpFetcher::HostStats> learned;  // the crawl's pace per host, for the downloads
  if (resuming) {
    check_resume_options(out.string(), options);
    failures = load_crawl_failures(out.string());
    plan = read_plan(out.string());
    log_info("resuming: {} train + {} val records planned in {}", plan.train.size(), plan.val.size(),
             out.string());
  } else {
    ScanOptions so;
    so.http = opt.http;
    so.labels_file = opt.labels_file;
    log_info("scanning {}", opt.source);
    SourceScan train = scan_source(opt.source, so);
    std::int64_t found = 0;
    for (auto& v : train.images) found += std::int64_t(v.size());
    log_info("found {} images in {} classes ({} listings, {:.1f} s, {} failures)", found,
             train.class_names.size(), train.listings, train.seconds, train.failures.size());
    rep.crawl_seconds = train.seconds;
    failures = train.failures;
    learned = so.learned = train.http_hosts;
    SourceScan val;
    if (!opt.val_source.empty()) {
      val = scan_source(opt.val_source, so);
      if (!val.http_hosts.empty()) learned = val.http_hosts;
      rep.crawl_seconds += val.seconds;
      failures.insert(failures.end(), val.failures.begin(), val.failures.end());
    }
    plan = make_plan(train, opt.val_source.empty() ? nullptr : &val, opt.plan);
    failures.insert(failures.end(), plan.notes.begin(), plan.notes.end());
    fs::create_directories(out);
    write_plan(plan, out.string());
    save_resume_options(out.string(), options);
    save_crawl_failures(out.string(), failures);
  }
  for (std::size_t l = 0; l < plan.labels.size(); ++l)
    log_info("Category {} has {} images.", l, plan.train_per_class[l] + plan.val_per_class[l]);

  // ---- databases and what is already there ------------------------------------------
  std::unique_ptr<LmdbWriter> dbs[2];
  dbs[0] = std::make_unique<LmdbWriter>((out / "train_db").string(), opt.lmdb_map_bytes);
  if (!plan.val.empty()) dbs[1] = std::make_unique<LmdbWriter>((out / "val_db").string(), opt.lmdb_map_bytes);
  const std::vector<PlanItem>* lists[2] = {&plan.train, &plan.val};
  std::unordered_set<std::string> existing[2];
  for (int db = 0; db < 2; ++db)
    if (dbs[db] && resuming) existing[db] = dbs[db]->keys();
  MeanAccumulator mean(opt.width, opt.height, opt.channels);
  if (resuming) restore_mean(out.string(), *dbs[0], &mean);

  std::int64_t todo = 0;
  for (int db = 0; db < 2; ++db) {
    for (std::size_t i = 0; i < lists[db]->size(); ++i)
      if (!existing[db].count(datum_key(std::int64_t(i), (*lists[db])[i].label))) ++todo;
    rep.skipped_existing += std::int64_t(existing[db].size());
  }
  if (resuming) log_info("{} records already written, {} to go", rep.skipped_existing, todo);

  // ---- pipeline ---------------------------------------------------------------------
  const int threads = opt.threads > 0 ? opt.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  const bool any_url =
      std::any_of(plan.train.begin(), plan.train.end(), [](auto& i) { return is_http_url(i.location); }) ||
      std::any_of(plan.val.begin(), plan.val.end(), [](auto& i) { return is_http_url(i.location); });
  std::unique_ptr<HttpFetcher> fetcher;
  if (any_url) {
    Url scope;
    const std::string first =
        is_http_url(opt.source) ? opt.source : (plan.train.empty() ? plan.val[0] : plan.train[0]).location;
    scope = parse_url(first).value_or(Url{});
    if (!is_http_url(opt.source))
      scope.path = "/";
    else
      scope.path = scope.path.substr(0, scope.path.rfind('/') + 1);
    scope.query.clear();
    fetcher = std::make_unique<HttpFetcher>(opt.http, scope, learned);
  }
  BoundedQueue<WorkItem> work_q(std::size_t(threads) * 4, any_url ? 2 : 1);
  BoundedQueue<WriteItem> write_q(std::size_t(threads) * 4 + 64, threads);

  const auto t_write = Clock::now();
  std::thread feeder([&] {
    for (int db = 0; db < 2 && !g_stop; ++db) {
      for (std::size_t i = 0; i < lists[db]->size() && !g_stop; ++i) {
        const PlanItem& it = (*lists[db])[i];
        if (existing[db].count(datum_key(std::int64_t(i), it.label))) continue;
        if (is_http_url(it.location)) {
          fetcher->submit(it.location, (std::uint64_t(db) << 62) | i);
        } else if (!work_q.push(WorkItem{db, std::int64_t(i), it.label, it.location, false, {}, {}})) {
          break;
        }
      }
    }
    if (fetcher) fetcher->close();
    work_q.close();
  });
  std::thread pump;
  if (fetcher) {
    pump = std::thread([&] {
      FetchResult r;
      while (fetcher->next(&r)) {
        const int db = int(r.tag >> 62);
        const std::int64_t i = std::int64_t(r.tag & ((std::uint64_t(1) << 62) - 1));
        WorkItem w{db, i, (*lists[db])[i].label, r.url, true, std::move(r.body), r.error};
        if (!work_q.push(std::move(w))) break;
      }
      work_q.close();
    });
  }
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      WorkItem w;
      while (work_q.pop(&w)) {
        WriteItem out;
        process(opt, w, out);
        if (!write_q.push(std::move(out))) break;
      }
      write_q.close();
    });
  }
  auto join_all = [&] {
    feeder.join();
    if (pump.joinable()) pump.join();
    for (auto& w : workers) w.join();
  };

  Progress progress("ingest", todo, opt.progress_interval_s);
  std::vector<LmdbWriter::Record> batch[2];
  std::vector<std::uint32_t> pending_sum(std::size_t(opt.width) * opt.height * opt.channels, 0);
  std::int64_t pending_count = 0, done = 0, run_failures = 0;
  auto last_commit = Clock::now();
  auto commit = [&](int db) {
    if (batch[db].empty()) return;
    if (db == 0) {
      // The sums with this batch are saved before it is committed, beside the sums without it
      // (save_mean_state keeps both): wherever a crash falls, one covers the committed records.
      mean.add_sums(pending_sum, pending_count);
      std::fill(pending_sum.begin(), pending_sum.end(), 0);
      pending_count = 0;
      save_mean_state(out.string(), mean, dbs[0]->entries() + std::int64_t(batch[0].size()));
    }
    dbs[db]->write_batch(batch[db]);
    rep.written_now += std::int64_t(batch[db].size());
    batch[db].clear();
    last_commit = Clock::now();
  };
  bool stop_sent = false;
  try {
    WriteItem item;
    while (write_q.pop(&item)) {
      ++done;
      if (item.failed) {
        ++run_failures;
        log_warn("{}: {} (skipped)", item.failure.what, item.failure.reason);
        failures.push_back(std::move(item.failure));
      } else {
        if (item.db == 0) {
          const std::uint8_t* px = item.image.pixels.data();
          for (std::size_t k = 0; k < pending_sum.size(); ++k) pending_sum[k] += px[k];
          ++pending_count;
        }
        batch[item.db].emplace_back(std::move(item.key), std::move(item.value));
        if (int(batch[item.db].size()) >= opt.batch_records) commit(item.db);
      }
      if (since(last_commit) > 2.0) commit(0), commit(1);
      progress.update(done, fmt::format("failures {}", run_failures));
      if (opt.stop_after_records >= 0 &&
          rep.written_now + std::int64_t(batch[0].size() + batch[1].size()) >= opt.stop_after_records)
        g_stop = true;
      if (g_stop && !stop_sent) {
        stop_sent = true;
        log_warn("stopping: committing the records in flight (continue later with --resume)");
        if (fetcher) fetcher->abort();
      }
    }
    commit(0);
    commit(1);
  } catch (...) {
    g_stop = true;
    if (fetcher) fetcher->abort();
    work_q.cancel();
    write_q.cancel();
    join_all();
    throw;
  }
  join_all();
  rep.interrupted = g_stop.load();
  progress.finish(fmt::format("failures {}", run_failures));
  rep.write_seconds = since(t_write);
  rep.failures = std::int64_t(failures.size());
  if (fetcher) {
    rep.bytes_downloaded = fetcher->bytes_received();
    rep.download_hosts = fetcher->host_stats();
    for (const auto& h : rep.download_hosts) log_info("downloads from {}", describe(h));
  }

  // ---- side files -----------------------------------------------------------------
  rep.train_records = dbs[0]->entries();
  rep.val_records = dbs[1] ? dbs[1]->entries() : 0;
  if (mean.count() > 0) {
    const Image m = mean.mean();
    std::ofstream(out / "mean.binaryproto", std::ios::binary) << mean_blobproto(m);
    std::ofstream(out / "mean.jpg", std::ios::binary) << encode_jpeg(m, 90);
  }
  rep.total_seconds = since(t_start);
  rep.images_per_second = rep.write_seconds > 0 ? double(rep.written_now) / rep.write_seconds : 0;

  std::vector<std::int64_t> per_label[2];
  for (int db = 0; db < 2; ++db) {
    per_label[db].assign(plan.labels.size(), 0);
    if (!dbs[db]) continue;
    for (const auto& k : dbs[db]->keys()) {
      std::int64_t idx;
      int label;
      if (parse_datum_key(k, &idx, &label) && label >= 0 && label < int(plan.labels.size()))
        ++per_label[db][label];
    }
  }
  nlohmann::json j;
  j["tool"] = "imagenet_ingest";
  j["options"] = options;
  j["output"] = {
      {"labels", "labels.txt"},  {"train_list", "train.txt"},        {"val_list", "val.txt"},
      {"train_db", "train_db"},  {"val_db", dbs[1] ? "val_db" : ""}, {"mean_file", "mean.binaryproto"},
      {"mean_image", "mean.jpg"}};
  j["classes"] = nlohmann::json::array();
  for (std::size_t l = 0; l < plan.labels.size(); ++l)
    j["classes"].push_back({{"label", l},
                            {"name", plan.labels[l]},
                            {"train_planned", plan.train_per_class[l]},
                            {"val_planned", plan.val_per_class[l]},
                            {"train", per_label[0][l]},
                            {"val", per_label[1][l]}});
  j["counts"] = {{"classes", plan.labels.size()},
                 {"train_planned", plan.train.size()},
                 {"val_planned", plan.val.size()},
                 {"train", rep.train_records},
                 {"val", rep.val_records},
                 {"written_this_run", rep.written_now},
                 {"already_present", rep.skipped_existing},
                 {"failures", failures.size()}};
  std::map<std::string, std::int64_t> by_reason;
  for (const auto& f : failures) ++by_reason[f.stage + ": " + reason_category(f.reason)];
  nlohmann::json items = nlohmann::json::array();
  for (std::size_t k = 0; k < failures.size() && k < 100000; ++k)
    items.push_back(
        {{"url", failures[k].what}, {"reason", failures[k].reason}, {"stage", failures[k].stage}});
  j["failures"] = {{"total", failures.size()},
                   {"by_reason", by_reason},
                   {"items", items},
                   {"items_truncated", failures.size() > 100000}};
  j["timings"] = {{"crawl_s", rep.crawl_seconds}, {"write_s", rep.write_seconds},
                  {"total_s", rep.total_seconds}, {"images_per_s", rep.images_per_second},
                  {"threads", threads},           {"bytes_downloaded", rep.bytes_downloaded}};
  j["interrupted"] = rep.interrupted;
  j["resumed"] = resuming;
  j["lmdb_map_grows"] = dbs[0]->map_grows() + (dbs[1] ? dbs[1]->map_grows() : 0);
  {
    std::ofstream f(out / "dataset.json.tmp");
    f << j.dump(2) << "\n";
  }
  fs::rename(out / "dataset.json.tmp", out / "dataset.json");

  if (rep.train_records == 0 && !rep.interrupted)
    throw Error(fmt::format("no usable training image: all {} failed (reasons in {}/dataset.json)",
                            plan.train.size(), out.string()));
  log_info("ingest {}: train {} / val {} records, {} failures, {:.1f} images/s, {}",
           rep.interrupted ? "interrupted" : "done", rep.train_records, rep.val_records, failures.size(),
           rep.images_per_second, format_duration(rep.total_seconds));
  return rep;
}

}  // namespace incept::data
