// export_caffe --job JOB_DIR [--snapshot N | --epoch E] --out MODEL.tar.gz
//              [--blob-format compatible|modern]
// DIGITS' "Download Model": the job's snapshot with its deploy/train_val/solver/original
// prototxt, labels, mean and info.json as one flat tar.gz that old Caffe (a Jetson's NVCaffe
// 0.15), BVLC Caffe 1.0 and OpenCV's dnn load. The work is in engine/model_archive.cpp.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>

#include "engine/check.h"
#include "engine/log.h"
#include "engine/model_archive.h"
#include "incept_commit.h"
#include "models/models.h"
#include "tools/cli_checks.h"

int main(int argc, char** argv) {
  std::string job_dir, out, format = "compatible";
  std::int64_t snapshot = 0;
  double epoch = 0;
  CLI::App app{"export_caffe: a training job's snapshot as DIGITS' model archive (tar.gz)"};
  app.add_option("--job", job_dir, "job folder (train_googlenet --output)")->required();
  auto* snap_opt = app.add_option("--snapshot", snapshot, "iteration of the snapshot (default: the latest)")
                       ->check(incept::cli::at_least(0));
  auto* epoch_opt =
      app.add_option("--epoch", epoch, "epoch of the snapshot (iteration / iterations per epoch)")
          ->check(incept::cli::at_least(0))
          ->excludes(snap_opt);
  app.add_option("--out", out, "archive to write (.tar.gz)")->required();
  app.add_option("--blob-format", format,
                 "compatible: float data with legacy 4-D dims (any Caffe, OpenCV); modern: BlobShape dims")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    incept::ExportOptions o;
    if (snap_opt->count()) o.snapshot_iter = snapshot;
    if (epoch_opt->count()) o.epoch = epoch;
    o.blob_format = incept::parse_blob_format(format);
    o.producer = std::string("incept ") + INCEPT_GIT_COMMIT;
    const incept::JobInfo job = incept::read_job(job_dir);
    const incept::ModelFiles files = incept::export_model(job, incept::models::by_name(job.network), o);
    const auto bytes = incept::write_model_archive(out, files);
    std::printf("%s: %s (%s blobs), %.1f MiB\n", out.c_str(), files.caffemodel_name.c_str(),
                incept::blob_format_name(o.blob_format), double(bytes) / (1 << 20));
    return 0;
  } catch (const incept::Error& e) {
    incept::log_error("export_caffe: {}", e.what());
    return 1;
  } catch (const std::exception& e) {
    incept::log_error("export_caffe: unexpected error: {}", e.what());
    return 2;
  }
}
