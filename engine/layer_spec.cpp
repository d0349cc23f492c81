// Small helpers of the net spec (layer_spec.h).
#include "engine/layer_spec.h"

namespace incept {

const char* stage_name(Stage s) {
  switch (s) {
    case Stage::kTrain:
      return "train";
    case Stage::kVal:
      return "val";
    case Stage::kDeploy:
      return "deploy";
  }
  return "?";
}

const DataLayerSpec* NetSpec::data_layer(Stage s) const {
  for (const DataLayerSpec& d : data_layers)
    if (d.stage == s) return &d;
  return nullptr;
}

const LayerSpec* NetSpec::find(const std::string& layer_name) const {
  for (const LayerSpec& l : layers)
    if (l.name == layer_name) return &l;
  return nullptr;
}

}  // namespace incept
