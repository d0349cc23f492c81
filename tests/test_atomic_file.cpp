// write_file_atomic (engine/atomic_file.h): whole-file replacement, no temporaries left
// behind, and errors that name the path while leaving the old file untouched.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/atomic_file.h"
#include "engine/check.h"
#include "testing/test_util.h"

namespace incept {
namespace {

namespace fs = std::filesystem;

int entries(const fs::path& dir) {
  int n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

std::string error_of(const fs::path& p, std::string_view bytes) {
  try {
    write_file_atomic(p, bytes);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(AtomicFile, WritesAndReplacesWholeFiles) {
  testing::TempDir dir;
  const fs::path p = dir / "snapshot_iter_1.caffemodel";
  std::string big(3 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = char(i * 131 + 7);
  write_file_atomic(p, big);
  EXPECT_EQ(testing::read_file(p), big);
  write_file_atomic(p, "short");
  EXPECT_EQ(testing::read_file(p), "short");
  write_file_atomic(p, "");
  EXPECT_EQ(fs::file_size(p), 0u);
  EXPECT_EQ(entries(dir.path()), 1);  // no temporary left behind
  const auto perms = fs::status(p).permissions();
  EXPECT_NE(perms & fs::perms::owner_read, fs::perms::none);
  EXPECT_NE(perms & fs::perms::others_read, fs::perms::none);  // not mkstemp's 0600 (umask 022)
}

TEST(AtomicFile, FailureNamesThePathAndKeepsTheOldFile) {
  testing::TempDir dir;
  const std::string missing = error_of(dir / "no_such_folder" / "a.caffemodel", "x");
  EXPECT_NE(missing.find("no_such_folder/a.caffemodel"), std::string::npos) << missing;
  EXPECT_NE(missing.find("No such file"), std::string::npos) << missing;

  // The target is a non-empty folder: the rename fails, nothing is left behind.
  fs::create_directory(dir / "taken");
  std::ofstream(dir / "taken" / "inside") << "keep";
  const std::string taken = error_of(dir / "taken", "new bytes");
  EXPECT_NE(taken.find("taken"), std::string::npos) << taken;
  EXPECT_NE(taken.find("rename"), std::string::npos) << taken;
  EXPECT_EQ(testing::read_file(dir / "taken" / "inside"), "keep");
  EXPECT_EQ(entries(dir.path()), 1);

  EXPECT_NE(error_of(dir.path() / "..", "x").find("not a file name"), std::string::npos);
}

}  // namespace
}  // namespace incept
