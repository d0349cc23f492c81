// Networks by the name a job records (models.h).
#include <fmt/format.h>

#include "engine/check.h"
#include "models/models.h"

namespace incept::models {

NetSpec by_name(const std::string& name) {
  if (name == "googlenet") return googlenet();
  if (name == "lenet") return lenet();
  throw Error(fmt::format("unknown network '{}' (known: googlenet, lenet)", name));
}

}  // namespace incept::models
