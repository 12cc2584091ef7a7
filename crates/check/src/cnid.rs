//! GB 11643-1999 resident identity numbers: 17 digits, a birth date at 7–14, and an
//! ISO 7064 MOD 11-2 check character.

use jiff::civil::Date;

/// Why an identity number is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdProblem {
    /// Not 18 characters of digits with a final digit or X.
    Format,
    /// The check character does not match.
    Checksum,
    /// The birth date does not exist (or is before 1800).
    BirthDate,
}

impl IdProblem {
    pub fn code(self) -> &'static str {
        match self {
            IdProblem::Format => "format",
            IdProblem::Checksum => "checksum",
            IdProblem::BirthDate => "birth_date",
        }
    }
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";

/// Normalise (NFKC-free: ASCII digits and X/x, spaces removed) and validate.
pub fn validate(raw: &str) -> Result<Date, IdProblem> {
    let s: Vec<u8> = raw
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if s.len() != 18
        || !s[..17].iter().all(u8::is_ascii_digit)
        || !(s[17].is_ascii_digit() || s[17] == b'X')
    {
        return Err(IdProblem::Format);
    }
    let sum: u32 = s[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    if CHECK[(sum % 11) as usize] != s[17] {
        return Err(IdProblem::Checksum);
    }
    birth_date(&s).ok_or(IdProblem::BirthDate)
}

fn birth_date(s: &[u8]) -> Option<Date> {
    let num = |r: std::ops::Range<usize>| std::str::from_utf8(&s[r]).ok()?.parse::<i16>().ok();
    let (y, m, d) = (num(6..10)?, num(10..12)?, num(12..14)?);
    if y < 1800 {
        return None;
    }
    Date::new(y, m as i8, d as i8).ok()
}

/// Completed years between `birth` and `on`.
pub fn age_on(birth: Date, on: Date) -> i64 {
    let mut age = i64::from(on.year()) - i64::from(birth.year());
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_numbers() {
        // The GB 11643 example number.
        assert_eq!(
            validate("11010519491231002X").unwrap(),
            Date::new(1949, 12, 31).unwrap()
        );
        assert_eq!(
            validate("11010519491231002x").unwrap(),
            Date::new(1949, 12, 31).unwrap()
        );
        assert_eq!(validate("110105194912310021"), Err(IdProblem::Checksum));
        assert_eq!(validate("1101051949123100"), Err(IdProblem::Format));
        // 1949-13-31 with a correct check character for its 17 digits.
        let body = "11010519491331002";
        let sum: u32 = body
            .bytes()
            .zip(WEIGHTS)
            .map(|(d, w)| u32::from(d - b'0') * w)
            .sum();
        let id = format!("{body}{}", CHECK[(sum % 11) as usize] as char);
        assert_eq!(validate(&id), Err(IdProblem::BirthDate));
    }

    #[test]
    fn age() {
        let b = Date::new(1990, 6, 15).unwrap();
        assert_eq!(age_on(b, Date::new(2026, 6, 14).unwrap()), 35);
        assert_eq!(age_on(b, Date::new(2026, 6, 15).unwrap()), 36);
    }
}
