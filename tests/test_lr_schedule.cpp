// The tutorial's polynomial decay.
#include <gtest/gtest.h>

#include "train/LrSchedule.h"

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
