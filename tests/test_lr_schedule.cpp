// The tutorial's polynomial decay.
#include <gtest/gtest.h>

#include "train/LrSchedule.h"

using mgpu::train::LrSchedule;
using mgpu::train::poly_decay;

TEST(LrSchedule, LinearDecayToZeroOverTheRun) {
  EXPECT_DOUBLE_EQ(poly_decay(5e-3, 0, 70, 1.0), 5e-3);
  EXPECT_DOUBLE_EQ(poly_decay(5e-3, 35, 70, 1.0), 2.5e-3);
  EXPECT_NEAR(poly_decay(5e-3, 69, 70, 1.0), 5e-3 / 70, 1e-18);
  EXPECT_DOUBLE_EQ(poly_decay(5e-3, 70, 70, 1.0), 0.0);
}

TEST(LrSchedule, PowerShapesTheCurve) {
  EXPECT_DOUBLE_EQ(poly_decay(1.0, 1, 2, 2.0), 0.25);
  EXPECT_DOUBLE_EQ(poly_decay(1.0, 1, 4, 0.0), 1.0);  // power 0: constant
  EXPECT_NEAR(poly_decay(0.1, 3, 10, 0.5), 0.1 * std::sqrt(0.7), 1e-15);
}

TEST(LrSchedule, WithoutScalingItIsThePerEpochDecay) {
  LrSchedule s;  // the tutorial: 5e-3, 70 epochs, power 1
  EXPECT_DOUBLE_EQ(s.at(0, 0.0), 5e-3);
  EXPECT_DOUBLE_EQ(s.at(35, 0.9), 2.5e-3);  // constant within an epoch
}

TEST(LrSchedule, LinearScalingWithWarmUp) {
  LrSchedule s;
  s.base_lr = 0.1;
  s.epochs = 10;
  s.scale = 4;  // e.g. 4 replicas
  s.warmup_epochs = 2;
  EXPECT_DOUBLE_EQ(s.at(0, 0.0), 0.1);                   // starts at the unscaled rate
  EXPECT_NEAR(s.at(1, 0.0), 0.4 * 0.9 * 0.625, 1e-12);   // halfway up the ramp (1/4 -> 1), decayed
  EXPECT_NEAR(s.at(2, 0.0), 0.4 * 0.8, 1e-12);           // the scaled rate, decayed
  EXPECT_GT(s.at(0, 0.5), s.at(0, 0.25));                // rises within an epoch
  s.warmup_epochs = 0;
  EXPECT_NEAR(s.at(0, 0.0), 0.4, 1e-12);
}
