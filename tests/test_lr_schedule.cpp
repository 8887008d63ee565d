// The tutorial's polynomial decay, and the per-step piecewise-linear schedule.
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

// airbench's warm-up and warm-down: from 0.2 x lr up to lr over the first fifth of the run, then
// down to 0 at its end, interpolated at every step (as numpy.interp over the step index).
TEST(LrSchedule, PiecewiseInterpolatesTheKnotsAtEveryStep) {
  LrSchedule s;
  s.name = "piecewise";
  s.base_lr = 2.0;
  s.epochs = 10;
  s.knots = {{0, 0.2}, {0.2, 1}, {1, 0}};
  EXPECT_DOUBLE_EQ(s.at(0, 0.0), 0.4);
  EXPECT_DOUBLE_EQ(s.at(1, 0.0), 2.0 * 0.6);              // halfway up
  EXPECT_DOUBLE_EQ(s.at(2, 0.0), 2.0);                    // the peak
  EXPECT_DOUBLE_EQ(s.at(6, 0.0), 2.0 * 0.5);              // halfway down
  EXPECT_NEAR(s.at(9, 0.5), 2.0 * 0.05 / 0.8, 1e-15);     // t = 0.95
  EXPECT_GT(s.at(1, 0.5), s.at(1, 0.0));                  // rises within an epoch
  EXPECT_LT(s.at(5, 0.5), s.at(5, 0.0));                  // and falls
  s.scale = 4;                                            // linear scaling multiplies it
  EXPECT_DOUBLE_EQ(s.at(2, 0.0), 8.0);
  EXPECT_DOUBLE_EQ(mgpu::train::interpolate(s.knots, 1.0), 0.0);
}

// ceil(steps x epochs) of the decimal as written: 100 x 1.1 is 110 steps, though the product
// in doubles is 110.00000000000001 (a run of 111 steps before); a true fraction still rounds up.
TEST(LrSchedule, AFractionalRunHasTheStepsItsDecimalSays) {
  EXPECT_EQ(mgpu::train::run_steps(100, 1.1), 110);
  EXPECT_EQ(mgpu::train::run_steps(100, 2.2), 220);
  EXPECT_EQ(mgpu::train::run_steps(100, 0.7), 70);
  EXPECT_EQ(mgpu::train::run_steps(97, 9.9), 961);     // 960.3: part of a step is a step
  EXPECT_EQ(mgpu::train::run_steps(781, 70), 54670);
  EXPECT_EQ(mgpu::train::run_steps(3, 1.0 / 3.0), 1);  // 0.9999999999999999
  EXPECT_EQ(mgpu::train::run_steps(10, 0.01), 1);
  int checked = 0;
  for (int64_t steps = 1; steps <= 400; ++steps) {  // every epochs value of one decimal place
    for (int tenths = 1; tenths <= 100; ++tenths) {
      const int64_t exact = (steps * tenths + 9) / 10;  // ceil in integers
      ASSERT_EQ(mgpu::train::run_steps(steps, tenths / 10.0), exact) << steps << " x " << tenths;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 40000);
}
