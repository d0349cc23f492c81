// Dataset plan: split, shuffle, persist (ingest_plan.h).
#include "data/ingest_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "engine/check.h"
#include "engine/log.h"

namespace fs = std::filesystem;

namespace incept::data {
namespace {

// DIGITS' three_way_split_indices without a test split: how many of n go to train.
std::int64_t train_count(std::int64_t n, double pct_val) {
  if (pct_val <= 0) return n;
  if (pct_val >= 100) return 0;
  std::int64_t a = std::llround(double(n) * (100 - pct_val) / 100);
  if (a == 0) a = 1;
  std::int64_t b = n - a;
  if (b == 0 && a > 1) --a;
  return a;
}

void write_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    f.flush();
    if (!f) throw Error(fmt::format("cannot write {}", tmp.string()));
  }
  fs::rename(tmp, path);
}

std::vector<PlanItem> read_list(const fs::path& path) {
  std::vector<PlanItem> items;
  std::ifstream f(path);
  if (!f) throw Error(fmt::format("cannot read {} (needed to resume)", path.string()));
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    const auto sp = line.rfind(' ');
    if (sp == std::string::npos) throw Error(fmt::format("{}: bad line '{}'", path.string(), line));
    items.push_back({line.substr(0, sp), std::stoi(line.substr(sp + 1))});
  }
  return items;
}

}  // namespace

std::string label_text(const std::string& folder_name) {
  std::string s = folder_name;
  std::replace(s.begin(), s.end(), '_', ' ');
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

Plan make_plan(const SourceScan& train, const SourceScan* val, const PlanOptions& opt) {
  std::mt19937_64 rng(opt.seed);
  Plan plan;
  std::map<std::string, int> label_of_name;
  const double pct_val = val ? 0.0 : opt.pct_val;
  const int splits = pct_val > 0 && pct_val < 100 ? 2 : 1;
  for (std::size_t c = 0; c < train.class_names.size(); ++c) {
    std::vector<std::string> files = train.images[c];
    std::shuffle(files.begin(), files.end(), rng);
    if (opt.max_per_class > 0 && std::int64_t(files.size()) > opt.max_per_class)
      files.resize(opt.max_per_class);
    const auto n = std::int64_t(files.size());
    if (n < std::max(opt.min_per_class, splits)) {
      const std::string why =
          fmt::format("class '{}' has {} images, fewer than {} (--min-per-class): dropped",
                      train.class_names[c], n, std::max(opt.min_per_class, splits));
      log_warn("{}", why);
      plan.notes.push_back({train.class_names[c], why, "plan"});
      continue;
    }
    const int label = int(plan.labels.size());
    label_of_name[train.class_names[c]] = label;
    plan.labels.push_back(label_text(train.class_names[c]));
    plan.class_names.push_back(train.class_names[c]);
    const std::int64_t a = train_count(n, pct_val);
    for (std::int64_t i = 0; i < n; ++i) (i < a ? plan.train : plan.val).push_back({files[i], label});
    plan.train_per_class.push_back(a);
    plan.val_per_class.push_back(n - a);
  }
  if (plan.labels.size() < 2)
    throw Error(
        fmt::format("only {} usable classes (at least 2 with --min-per-class={} images each are needed)",
                    plan.labels.size(), opt.min_per_class));
  if (val) {  // separate validation source: classes matched by folder name
    for (std::size_t c = 0; c < val->class_names.size(); ++c) {
      const auto it = label_of_name.find(val->class_names[c]);
      if (it == label_of_name.end()) {
        const std::string why =
            fmt::format("validation class '{}' is not a training class: skipped", val->class_names[c]);
        log_warn("{}", why);
        plan.notes.push_back({val->class_names[c], why, "plan"});
        continue;
      }
      std::vector<std::string> files = val->images[c];
      std::shuffle(files.begin(), files.end(), rng);
      if (opt.max_per_class > 0 && std::int64_t(files.size()) > opt.max_per_class)
        files.resize(opt.max_per_class);
      for (auto& f : files) plan.val.push_back({f, it->second});
      plan.val_per_class[it->second] += std::int64_t(files.size());
    }
  }
  std::shuffle(plan.train.begin(), plan.train.end(), rng);
  std::shuffle(plan.val.begin(), plan.val.end(), rng);
  return plan;
}

void write_plan(const Plan& plan, const std::string& dir) {
  std::string labels, train, val;
  for (const auto& l : plan.labels) labels += l + "\n";
  for (const auto& i : plan.train) train += fmt::format("{} {}\n", i.location, i.label);
  for (const auto& i : plan.val) val += fmt::format("{} {}\n", i.location, i.label);
  write_atomic(fs::path(dir) / "labels.txt", labels);
  write_atomic(fs::path(dir) / "train.txt", train);
  write_atomic(fs::path(dir) / "val.txt", val);
}

Plan read_plan(const std::string& dir) {
  Plan plan;
  std::ifstream f(fs::path(dir) / "labels.txt");
  if (!f) throw Error(fmt::format("cannot read {}/labels.txt (needed to resume)", dir));
  std::string line;
  while (std::getline(f, line)) plan.labels.push_back(line);
  plan.train = read_list(fs::path(dir) / "train.txt");
  plan.val = read_list(fs::path(dir) / "val.txt");
  plan.train_per_class.assign(plan.labels.size(), 0);
  plan.val_per_class.assign(plan.labels.size(), 0);
  for (const auto& i : plan.train) plan.train_per_class.at(i.label)++;
  for (const auto& i : plan.val) plan.val_per_class.at(i.label)++;
  return plan;
}

}  // namespace incept::data
