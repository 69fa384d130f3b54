//! SQLite 3.40's `%!.Ng` float rendering, which computes in x87 80-bit `long double`.
//!
//! The stock 3.40 shell prints REALs through this code (3.43 replaced it), and its
//! digits beyond the 17th are artefacts of 64-bit-mantissa arithmetic: 1e100 prints as
//! `1.0e+100` under `%!.20g`, where an exact conversion gives `1.0000000000000000159e+100`.
//! To print what the stock shell prints, the same steps run here on a software
//! `long double` (positive values only; round to nearest even, as the x87 does).

use std::cmp::Ordering;

/// A positive extended-precision value: `mantissa · 2^(exponent − 63)`, the mantissa
/// normalised (top bit set) unless the value is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Extended {
    exponent: i32,
    mantissa: u64,
}

const ZERO: Extended = Extended {
    exponent: 0,
    mantissa: 0,
};

impl Extended {
    fn from_f64(value: f64) -> Extended {
        let bits = value.abs().to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i32;
        let fraction = bits & ((1 << 52) - 1);
        if biased == 0 && fraction == 0 {
            return ZERO;
        }
        let (mantissa, exponent) = if biased == 0 {
            (fraction, -1074 + 52) // subnormal: fraction · 2^-1074
        } else {
            (fraction | (1 << 52), biased - 1023)
        };
        // `mantissa` holds 53 bits with its top at bit 52: value = mantissa · 2^(exponent − 52).
        normalise(u128::from(mantissa), exponent - 52 + 63, false)
    }

    fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    fn mul(self, other: Extended) -> Extended {
        if self.is_zero() || other.is_zero() {
            return ZERO;
        }
        let product = u128::from(self.mantissa) * u128::from(other.mantissa);
        // product · 2^(e1 + e2 − 126)
        normalise(product, self.exponent + other.exponent - 126 + 63, false)
    }

    fn div(self, other: Extended) -> Extended {
        if self.is_zero() {
            return ZERO;
        }
        let numerator = u128::from(self.mantissa) << 64;
        let divisor = u128::from(other.mantissa);
        let quotient = numerator / divisor;
        let remainder = numerator % divisor;
        // quotient · 2^(e1 − e2 − 64); a non-zero remainder is below the last bit.
        normalise_with_remainder(
            quotient,
            self.exponent - other.exponent - 64 + 63,
            remainder,
            divisor,
        )
    }

    /// Sum of two non-negative values.
    fn add(self, other: Extended) -> Extended {
        if self.is_zero() {
            return other;
        }
        if other.is_zero() {
            return self;
        }
        let (big, small) = if self.exponent >= other.exponent {
            (self, other)
        } else {
            (other, self)
        };
        let shift = (big.exponent - small.exponent) as u32;
        let wide_big = u128::from(big.mantissa) << 62;
        let wide_small = u128::from(small.mantissa) << 62;
        let (aligned, sticky) = if shift >= 126 {
            (0, true)
        } else {
            (
                wide_small >> shift,
                wide_small & ((1u128 << shift) - 1) != 0,
            )
        };
        // (wide_big + aligned) · 2^(big.exponent − 63 − 62)
        normalise(wide_big + aligned, big.exponent - 62, sticky)
    }

    /// `self − other` where `other` is a whole number not above `self` (exact here).
    fn sub_whole(self, whole: u64) -> Extended {
        if whole == 0 {
            return self;
        }
        let other = Extended::from_u64(whole);
        let shift = (self.exponent - other.exponent) as u32;
        let wide_self = u128::from(self.mantissa) << 62;
        let wide_other = (u128::from(other.mantissa) << 62) >> shift;
        normalise(wide_self - wide_other, self.exponent - 62, false)
    }

    fn from_u64(value: u64) -> Extended {
        normalise(u128::from(value), 63, false)
    }

    /// Truncation towards zero (the value is below 2^63 here).
    fn to_u64(self) -> u64 {
        if self.is_zero() || self.exponent < 0 {
            return 0;
        }
        if self.exponent >= 63 {
            return self.mantissa;
        }
        self.mantissa >> (63 - self.exponent)
    }

    fn compare(self, other: Extended) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            _ => self
                .exponent
                .cmp(&other.exponent)
                .then(self.mantissa.cmp(&other.mantissa)),
        }
    }
}

/// `wide · 2^(exponent − 63 − (bits above 64 …))`: rounds `wide` to 64 significant bits.
/// `exponent` is the exponent the value would have if `wide` were a normalised u64.
fn normalise(wide: u128, exponent: i32, sticky: bool) -> Extended {
    if wide == 0 {
        return ZERO;
    }
    let top = 127 - wide.leading_zeros() as i32; // index of the highest set bit
    // value = wide · 2^(exponent − 63); as a normalised mantissa m · 2^(E − 63) with m's
    // top bit at 63: E = exponent + top − 63.
    let new_exponent = exponent + top - 63;
    if top <= 63 {
        return Extended {
            exponent: new_exponent,
            mantissa: (wide << (63 - top)) as u64,
        };
    }
    let drop = (top - 63) as u32;
    let kept = wide >> drop;
    let rest = wide & ((1u128 << drop) - 1);
    let half = 1u128 << (drop - 1);
    let round_up = rest > half || (rest == half && (sticky || kept & 1 == 1));
    let round_up = round_up || (rest == half && sticky);
    finish_rounding(kept, round_up, new_exponent)
}

fn normalise_with_remainder(
    quotient: u128,
    exponent: i32,
    remainder: u128,
    divisor: u128,
) -> Extended {
    let top = 127 - quotient.leading_zeros() as i32;
    let new_exponent = exponent + top - 63;
    if top <= 63 {
        // quotient fits: the remainder decides rounding (2r against the divisor).
        let mantissa = quotient << (63 - top);
        let twice = remainder * 2;
        let round_up = twice > divisor || (twice == divisor && mantissa & 1 == 1);
        return finish_rounding(mantissa, round_up, new_exponent);
    }
    let drop = (top - 63) as u32;
    let kept = quotient >> drop;
    let rest = quotient & ((1u128 << drop) - 1);
    let half = 1u128 << (drop - 1);
    let sticky = remainder != 0;
    let round_up = rest > half || (rest == half && (sticky || kept & 1 == 1));
    finish_rounding(kept, round_up, new_exponent)
}

fn finish_rounding(kept: u128, round_up: bool, exponent: i32) -> Extended {
    let mut mantissa = kept + u128::from(round_up);
    let mut exponent = exponent;
    if mantissa >> 64 != 0 {
        mantissa >>= 1;
        exponent += 1;
    }
    Extended {
        exponent,
        mantissa: mantissa as u64,
    }
}

/// SQLite 3.40's `%!.<digits>g` of a finite or infinite, non-NaN value.
pub fn sqlite_g(value: f64, digits: usize) -> String {
    let prefix = if value < 0.0 { "-" } else { "" };
    if value.is_infinite() {
        return format!("{prefix}Inf");
    }
    let mut real = Extended::from_f64(value);
    let mut precision = digits.saturating_sub(1) as i32;
    let mut index = precision & 0xfff;
    const ROUNDERS: [f64; 10] = [
        5.0e-01, 5.0e-02, 5.0e-03, 5.0e-04, 5.0e-05, 5.0e-06, 5.0e-07, 5.0e-08, 5.0e-09, 5.0e-10,
    ];
    let mut rounder = ROUNDERS[(index % 10) as usize];
    while index >= 10 {
        rounder *= 1.0e-10;
        index -= 10;
    }
    let mut exp: i32 = 0;
    if !real.is_zero() {
        let mut scale = Extended::from_f64(1.0);
        let e100 = Extended::from_f64(1e100);
        let e10 = Extended::from_f64(1e10);
        let ten = Extended::from_f64(10.0);
        while real.compare(e100.mul(scale)) != Ordering::Less && exp <= 350 {
            scale = scale.mul(e100);
            exp += 100;
        }
        while real.compare(e10.mul(scale)) != Ordering::Less && exp <= 350 {
            scale = scale.mul(e10);
            exp += 10;
        }
        while real.compare(ten.mul(scale)) != Ordering::Less && exp <= 350 {
            scale = scale.mul(ten);
            exp += 1;
        }
        real = real.div(scale);
        let e_minus8 = Extended::from_f64(1e-8);
        let e8 = Extended::from_f64(1e8);
        let one = Extended::from_f64(1.0);
        while real.compare(e_minus8) == Ordering::Less {
            real = real.mul(e8);
            exp -= 8;
        }
        while real.compare(one) == Ordering::Less {
            real = real.mul(ten);
            exp -= 1;
        }
        if exp > 350 {
            return format!("{prefix}Inf");
        }
    }
    real = real.add(Extended::from_f64(rounder));
    if real.compare(Extended::from_f64(10.0)) != Ordering::Less {
        real = real.mul(Extended::from_f64(0.1));
        exp += 1;
    }
    let exponential = exp < -4 || exp > precision;
    let mut whole_digits = if exponential {
        0
    } else {
        precision -= exp;
        exp
    };
    let mut significant = 16 + 10; // `!` allows 26 significant digits
    let mut digit = |real: &mut Extended| -> char {
        if significant <= 0 {
            return '0';
        }
        significant -= 1;
        let whole = real.to_u64().min(9);
        *real = real.sub_whole(whole).mul(Extended::from_f64(10.0));
        char::from(b'0' + whole as u8)
    };
    let mut text = String::from(prefix);
    if whole_digits < 0 {
        text.push('0');
    } else {
        while whole_digits >= 0 {
            text.push(digit(&mut real));
            whole_digits -= 1;
        }
    }
    text.push('.');
    whole_digits += 1;
    while whole_digits < 0 {
        text.push('0');
        precision -= 1;
        whole_digits += 1;
    }
    while precision > 0 {
        text.push(digit(&mut real));
        precision -= 1;
    }
    while text.ends_with('0') {
        text.pop();
    }
    if text.ends_with('.') {
        text.push('0');
    }
    if exponential {
        let sign = if exp < 0 { '-' } else { '+' };
        let magnitude = exp.unsigned_abs();
        text.push('e');
        text.push(sign);
        if magnitude >= 100 {
            text.push_str(&format!("{}", magnitude / 100));
        }
        text.push_str(&format!("{:02}", magnitude % 100));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_arithmetic_is_exact_where_it_must_be() {
        let three = Extended::from_f64(3.0);
        assert_eq!(three.to_u64(), 3);
        assert_eq!(three.mul(Extended::from_f64(10.0)).to_u64(), 30);
        assert_eq!(
            Extended::from_f64(7.5)
                .sub_whole(7)
                .mul(Extended::from_f64(10.0))
                .to_u64(),
            5
        );
        assert_eq!(
            Extended::from_f64(1.0).div(Extended::from_f64(4.0)),
            Extended::from_f64(0.25)
        );
        assert_eq!(
            Extended::from_f64(0.5).add(Extended::from_f64(0.25)),
            Extended::from_f64(0.75)
        );
    }

    /// Outputs of the stock sqlite3 3.40.1 shell (`.mode quote` is `%!.20g`).
    #[test]
    fn matches_the_stock_340_shell() {
        let cases = [
            (1e100, 20, "1.0e+100"),
            (1.5e300, 20, "1.5000000000000000071e+300"),
            (1e300, 20, "1.0000000000000000047e+300"),
            (1.0 / 3.0, 20, "0.33333333333333331482"),
            (0.1, 20, "0.10000000000000000555"),
            (0.1 + 0.2, 15, "0.3"),
            (1e15, 15, "1.0e+15"),
            (123456789012345678.0, 15, "1.23456789012346e+17"),
            (-0.0, 15, "0.0"),
            (100.0, 15, "100.0"),
            (1e-5, 15, "1.0e-05"),
            (f64::INFINITY, 15, "Inf"),
            (f64::NEG_INFINITY, 15, "-Inf"),
        ];
        for (value, digits, expected) in cases {
            assert_eq!(sqlite_g(value, digits), expected, "{value:e} %!.{digits}g");
        }
    }
}
