// Network definitions as data (engine/layer_spec.h): DIGITS' standard GoogLeNet and LeNet,
// with Caffe's layer and blob names, stage rules, param multipliers and fillers, so the Caffe
// export writes back DIGITS' prototxt. Classifiers have num_output 0: plan_net fills in the
// dataset's class count, as DIGITS does.
#pragma once

#include <string>

#include "engine/layer_spec.h"

namespace incept::models {

// NVIDIA/DIGITS digits/standard-networks/caffe/googlenet.prototxt (stage-based, DIGITS >= 5):
// 3x224x224 input (crop 224, mirror in train), batch 32 train / 16 val.
NetSpec googlenet();

// DIGITS' lenet.prototxt: 1x28x28 input scaled by 0.0125, batch 64 train / 32 val.
NetSpec lenet();

// The network of a job.json "network" value ("googlenet", "lenet"); throws Error listing them.
NetSpec by_name(const std::string& name);

}  // namespace incept::models
