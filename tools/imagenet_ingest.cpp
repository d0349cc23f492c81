// imagenet_ingest SOURCE OUTPUT_DIR [options]: builds a DIGITS/Caffe-compatible dataset
// (LMDB of Datums + labels, lists and mean) from an HTTP image folder, a local folder or a
// "path label" text file. All the work is in data/ingest.cpp.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>

#include "data/ingest.h"
#include "engine/check.h"
#include "engine/log.h"
#include "tools/cli_checks.h"

namespace {
extern "C" void on_signal(int) {
  incept::data::request_ingest_stop();
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the program at once
  std::signal(SIGTERM, SIG_DFL);
}
}  // namespace

int main(int argc, char** argv) {
  using namespace incept::data;
  IngestOptions o;
  std::string resize = "squash", encoding = "jpg";
  double max_download_mb = 64, lmdb_map_mb = 1024;
  bool verbose = false;
  CLI::App app{
      "imagenet_ingest: crawl an image folder (http(s) URL of a directory listing, local folder, "
      "or 'path label' text file) into a DIGITS/Caffe LMDB dataset"};
  app.add_option("SOURCE", o.source,
                 "URL of the folder listing, a local folder, or a text file of 'path label' lines")
      ->required();
  app.add_option("OUTPUT_DIR", o.output_dir, "dataset folder to create (must be empty unless --resume)")
      ->required();
  app.add_option("--val-source", o.val_source,
                 "separate validation folder/URL (classes matched by name; --pct-val ignored)");
  app.add_option("--labels", o.labels_file, "class names, one per line (text-file sources)");
  app.add_option("--width", o.width, "image width")->capture_default_str()->check(CLI::Range(1, 8192));
  app.add_option("--height", o.height, "image height")->capture_default_str()->check(CLI::Range(1, 8192));
  app.add_option("--channels", o.channels, "3 (color, BGR records) or 1 (grayscale)")
      ->capture_default_str()
      ->check(CLI::IsMember({1, 3}));
  app.add_option("--resize", resize, "squash, crop, fill or half_crop")->capture_default_str();
  app.add_option("--encoding", encoding, "jpg (quality --jpeg-quality), png or none (raw CHW BGR)")
      ->capture_default_str();
  app.add_option("--jpeg-quality", o.jpeg_quality, "JPEG quality")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--pct-val", o.plan.pct_val, "percent of each class for validation")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  app.add_option("--min-per-class", o.plan.min_per_class, "drop classes with fewer images")
      ->capture_default_str()
      ->check(incept::cli::at_least(0));
  app.add_option("--max-per-class", o.plan.max_per_class, "use at most this many images per class (0: all)")
      ->capture_default_str()
      ->check(incept::cli::at_least(0));
  app.add_option("--seed", o.plan.seed, "shuffle/split seed")->capture_default_str();
  app.add_option("--threads", o.threads, "decode/encode threads (0: one per core)")
      ->capture_default_str()
      ->check(incept::cli::at_least(0));
  app.add_option("--downloads", o.http.max_in_flight, "most concurrent downloads, all hosts together")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--per-host", o.http.max_per_host,
                 "most connections to one host (ceiling of the adaptive limit, see below)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--start-per-host", o.http.start_per_host,
                 "connections to a host at first (set it to --per-host to start at the ceiling)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--connect-timeout", o.http.connect_timeout_s, "seconds to connect")
      ->capture_default_str()
      ->check(incept::cli::above(0));
  app.add_option("--timeout", o.http.timeout_s, "seconds for a whole download")
      ->capture_default_str()
      ->check(incept::cli::above(0));
  app.add_option("--stall-timeout", o.http.stall_timeout_s,
                 "abort a download when no byte arrives for this many seconds")
      ->capture_default_str()
      ->check(incept::cli::above(0));
  app.add_option("--max-redirects", o.http.max_redirects, "redirects followed (inside the start URL only)")
      ->capture_default_str()
      ->check(incept::cli::at_least(0));
  app.add_option("--max-download-mb", max_download_mb, "largest file accepted (MiB)")
      ->capture_default_str()
      ->check(incept::cli::above(0));
  app.add_option("--max-pixels", o.max_pixels, "refuse images with more pixels (checked from the header)")
      ->capture_default_str()
      ->check(incept::cli::above(0));
  app.add_option("--batch", o.batch_records, "records per LMDB transaction")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--lmdb-map-mb", lmdb_map_mb, "initial LMDB map size (MiB); doubled whenever full")
      ->capture_default_str()
      ->check(incept::cli::above(0));
  app.add_flag("--resume", o.resume, "continue an interrupted run in OUTPUT_DIR (same options)");
  app.add_option("--progress-interval", o.progress_interval_s, "seconds between progress lines")
      ->capture_default_str()
      ->check(incept::cli::above(0));
  app.add_flag("-v,--verbose", verbose, "debug logging");
  app.footer(
      "Downloads adapt to each server. A host starts with --start-per-host connections; while it answers\n"
      "promptly and there is more to fetch, each completed download adds one (up to --per-host, and\n"
      "--downloads for all hosts together). When a connect or a first response byte takes far longer\n"
      "than is usual for that host (a full listen queue dropping connection attempts), when a connect\n"
      "fails, or on HTTP 503/429, the host's limit is halved (or cut to the connections the server\n"
      "took); after that it grows by one at most every 0.5 s, less often each time the host congests\n"
      "again at the same level. A stuck connect or request is abandoned and tried again on a fresh\n"
      "connection instead of waiting for TCP's 1 s/3 s/7 s retransmissions; 503/429 pause the host for\n"
      "its Retry-After (0.5 s if absent) and are retried. -v logs every change of a host's limit; the\n"
      "end of the run reports how many connections each host reached and why it backed off.");
  CLI11_PARSE(app, argc, argv);
  if (verbose) incept::set_log_level(incept::LogLevel::kDebug);
  try {
    o.resize = parse_resize_mode(resize);
    o.encoding = parse_encoding(encoding);
    o.http.max_bytes = std::int64_t(max_download_mb * (1 << 20));
    o.http.max_outstanding = std::max(256, o.http.max_in_flight * 4);
    o.lmdb_map_bytes = std::size_t(lmdb_map_mb * (1 << 20));
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    const IngestReport r = run_ingest(o);
    if (r.interrupted) {
      std::fprintf(stderr, "interrupted: %lld records committed; continue with --resume\n",
                   static_cast<long long>(r.train_records + r.val_records));
      return 130;
    }
    return 0;
  } catch (const incept::Error& e) {
    incept::log_error("imagenet_ingest: {}", e.what());
    return 1;
  } catch (const std::exception& e) {
    incept::log_error("imagenet_ingest: unexpected error: {}", e.what());
    return 2;
  }
}
