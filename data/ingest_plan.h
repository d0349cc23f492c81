// The dataset plan, fixed before any record is written: classes (labels.txt), each image's
// split, and the shuffled order of train.txt / val.txt. Line i of train.txt becomes LMDB key
// "%08d_%d" % (i, label), so an interrupted run resumes from the files alone: nothing lost,
// nothing written twice. Splitting follows DIGITS (per-class shuffle, rounded split with at
// least one image in each non-empty split, min/max images per class).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/image_source.h"

namespace incept::data {

struct PlanOptions {
  double pct_val = 25;  // share of each class for validation (ignored with a val source)
  int min_per_class = 2;
  int max_per_class = 0;  // 0: no limit
  std::uint64_t seed = 0;
};

struct PlanItem {
  std::string location;  // URL or local path
  int label = 0;
};

struct Plan {
  std::vector<std::string> labels;       // label text, index = label
  std::vector<std::string> class_names;  // source folder names
  std::vector<PlanItem> train, val;      // in record (key) order
  std::vector<std::int64_t> train_per_class, val_per_class;
  std::vector<Failure> notes;  // dropped classes, unknown val classes
};

// DIGITS' label text: the folder name with every '_' turned into a space.
std::string label_text(const std::string& folder_name);

Plan make_plan(const SourceScan& train, const SourceScan* val, const PlanOptions& opt);

// labels.txt, train.txt, val.txt ("<location> <label>" lines), written atomically.
void write_plan(const Plan& plan, const std::string& dir);
// Reads them back (for --resume).
Plan read_plan(const std::string& dir);

}  // namespace incept::data
