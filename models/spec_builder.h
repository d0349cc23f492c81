// Helpers that append Caffe-style layer specs to a NetSpec (shared by the model files).
#pragma once

#include <string>

#include "engine/layer_spec.h"

namespace incept::models {

FillerSpec xavier(float std = 0.f);
FillerSpec constant(float value);

// Convolution (+ in-place ReLU named relu_name, if not empty); weights lr 1 decay 1, bias lr 2
// decay 0 (DIGITS' convention).
void add_conv(NetSpec& net, const std::string& name, const std::string& bottom, int num_output, int kernel,
              int stride, int pad, FillerSpec weight, float bias_value, const std::string& relu_name,
              StageMask exclude = 0);
void add_fc(NetSpec& net, const std::string& name, const std::string& bottom, int num_output,
            FillerSpec weight, float bias_value, StageMask exclude = 0);
void add_pool(NetSpec& net, const std::string& name, const std::string& bottom, PoolMethod method, int kernel,
              int stride, int pad = 0, StageMask exclude = 0);
void add_relu(NetSpec& net, const std::string& name, const std::string& blob, StageMask exclude = 0);
void add_dropout(NetSpec& net, const std::string& name, const std::string& blob, float ratio,
                 StageMask exclude = 0);
void add_lrn(NetSpec& net, const std::string& name, const std::string& bottom);
void add_loss(NetSpec& net, const std::string& name, const std::string& scores, const std::string& top,
              float loss_weight);
// Accuracy, stage val only.
void add_accuracy(NetSpec& net, const std::string& name, const std::string& scores, const std::string& top,
                  int top_k);

}  // namespace incept::models
