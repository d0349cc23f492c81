// Crash-safe file replacement (atomic_file.h): write to a temporary sibling, fsync, rename,
// fsync the folder. POSIX only (rename within one folder is atomic there).
#include "engine/atomic_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "engine/check.h"

namespace incept {
namespace {

// Closes a descriptor on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  int release() {
    const int f = fd;
    fd = -1;
    return f;
  }
};

std::atomic<unsigned> g_tmp_counter{0};

// Creates a new temporary file next to `path` (O_EXCL: never an existing file; mode 0666
// minus the umask, like an ordinary file). Returns its name.
std::string create_temporary(const std::filesystem::path& path, Fd& file) {
  const std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string tmp =
        (dir / fmt::format(".{}.tmp.{}.{}", path.filename().string(), ::getpid(), g_tmp_counter++)).string();
    file.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (file.fd >= 0) return tmp;
    if (errno != EEXIST)
      throw Error(fmt::format("cannot write {}: cannot create a temporary file in {}: {}", path.string(),
                              dir.string(), std::strerror(errno)));
  }
  throw Error(fmt::format("cannot write {}: no free temporary file name in {}", path.string(), dir.string()));
}

}  // namespace

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  if (path.filename().empty() || path.filename() == "." || path.filename() == "..")
    throw Error(fmt::format("cannot write '{}': not a file name", path.string()));
  Fd file;
  const std::string tmp = create_temporary(path, file);
  auto fail = [&](const char* what) {
    const int err = errno;
    if (file.fd >= 0) ::close(file.release());
    ::unlink(tmp.c_str());
    throw Error(fmt::format("cannot write {}: {} failed: {}", path.string(), what, std::strerror(err)));
  };
  const char* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(file.fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    p += n;
    left -= std::size_t(n);
  }
  if (::fsync(file.fd) != 0) fail("fsync");
  if (::close(file.release()) != 0) fail("close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename");
  // The rename is durable only once the folder's entry is on disk.
  Fd folder;
  const std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  folder.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (folder.fd < 0 || ::fsync(folder.fd) != 0)
    throw Error(fmt::format("{} was written but its folder {} could not be flushed: {}", path.string(),
                            dir.string(), std::strerror(errno)));
}

}  // namespace incept
