// DIGITS' "Download Model" archive: a flat tar.gz with deploy.prototxt, train_val.prototxt,
// solver.prototxt, original.prototxt, labels.txt, mean.binaryproto, snapshot_iter_N.caffemodel
// and info.json (DIGITS' keys, json.dumps(sort_keys=True, indent=4) layout), what a Jetson's
// old Caffe, OpenCV's dnn or DIGITS' own "upload pretrained model" take. Built from a job folder
// (engine/job_dir.h), written and read with libarchive.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "engine/caffe_model.h"
#include "engine/job_dir.h"

namespace incept {

// The archive's files, in memory (names are the archive's flat names).
struct ModelFiles {
  std::string deploy_prototxt, train_val_prototxt, solver_prototxt, original_prototxt;
  std::string labels_txt;        // one label a line, index = class
  std::string mean_binaryproto;  // BlobProto bytes (CHW BGR floats)
  std::string caffemodel_name;   // "snapshot_iter_N.caffemodel"
  std::string caffemodel;        // binary NetParameter
  std::string info_json;         // DIGITS' info.json text

  // (name, bytes) in archive order.
  std::vector<std::pair<std::string, const std::string*>> entries() const;
  std::vector<std::string> labels() const;  // labels_txt split into lines (empty lines dropped)
};

struct ExportOptions {
  std::optional<std::int64_t> snapshot_iter;  // --snapshot N
  std::optional<double> epoch;                // --epoch E
  BlobFormat blob_format = BlobFormat::kCompatible;
  std::string producer = "incept";  // info.json "digits version" (e.g. "incept 1a2b3c4d5e")
};

// The archive's contents for `job` (its network `spec`): the chosen snapshot re-encoded in the
// requested blob format, the job's prototxt files (generated from the spec and job.json where
// the job folder lacks them), labels and mean from the job folder or else its dataset, and
// info.json. Throws Error naming what is missing.
ModelFiles export_model(const JobInfo& job, const NetSpec& spec, const ExportOptions& opt);

// DIGITS' info.json for a job and one snapshot.
std::string info_json(const JobInfo& job, const std::string& caffemodel_name, const std::string& producer);

// tar.gz of files.entries(), written atomically (engine/atomic_file.h). Returns the archive's size.
std::uintmax_t write_model_archive(const std::filesystem::path& out, const ModelFiles& files);

// Reads an archive (tar, tar.gz, tar.bz2 or zip, flat or in one folder) back. Requires
// deploy.prototxt, labels.txt and one .caffemodel; the others are read when present (a DIGITS
// archive from before 2016 has no train_val/solver/original). Throws Error for anything else.
ModelFiles read_model_archive(const std::filesystem::path& path);

}  // namespace incept
