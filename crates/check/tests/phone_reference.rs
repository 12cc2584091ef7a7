//! Phone verdicts cross-checked against the reference implementation's Python port
//! (`phonenumbers`, installed by .ci/run) over a broad, deterministic set of numbers:
//! mobiles of every 13x–19x prefix at 10–12 digits, landlines of many area codes at
//! 6–9 subscriber digits, 400/800 service numbers at 10 and 12 digits, random digit
//! strings, and formatting variants (+86, 0086, hyphens, spaces, full-width digits).

use std::fmt::Write as _;
use std::process::Command;

use crmdq_check::phone::PhoneRules;

struct Lcg(u64);

impl Lcg {
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                char::from(b'0' + ((self.0 >> 33) % 10) as u8)
            })
            .collect()
    }
}

fn candidates() -> Vec<String> {
    let mut r = Lcg(20_261_127);
    let mut v = Vec::new();
    for prefix in 130..200 {
        for len in [10, 11, 12] {
            for _ in 0..4 {
                v.push(format!("{prefix}{}", r.digits(len - 3)));
            }
        }
    }
    let areas = [
        "010", "020", "021", "022", "023", "024", "025", "027", "028", "029", "0311", "0351",
        "0371", "0431", "0451", "0471", "0531", "0551", "0571", "0591", "0731", "0755", "0769",
        "0898", "0991", "0335", "0917", "0668",
    ];
    for a in areas {
        for sub in [6, 7, 8, 9] {
            for _ in 0..3 {
                let first = ["2", "5", "6", "8"][r.digits(1).parse::<usize>().unwrap() % 4];
                v.push(format!("{a}{first}{}", r.digits(sub - 1)));
            }
        }
    }
    for p in ["400", "800"] {
        for len in [10, 11, 12] {
            for _ in 0..10 {
                v.push(format!("{p}{}", r.digits(len - 3)));
            }
        }
    }
    for len in 5..=13 {
        for _ in 0..60 {
            v.push(r.digits(len));
        }
    }
    // Formatting variants of a sample.
    let sample: Vec<String> = v.iter().step_by(7).cloned().collect();
    for s in sample {
        v.push(format!("+86 {s}"));
        v.push(format!("0086{s}"));
        if s.len() > 7 {
            v.push(format!("{}-{}-{}", &s[..3], &s[3..7], &s[7..]));
        }
        v.push(
            s.chars()
                .map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap())
                .collect(),
        );
    }
    v
}

#[test]
#[ignore = "needs Python phonenumbers; .ci/run installs it and runs the ignored tests"]
fn phone_validity_agrees_with_libphonenumber_python_port() {
    let probe = Command::new("python3")
        .args(["-c", "import phonenumbers"])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "Python phonenumbers is not installed (.ci/run installs it)"
    );
    let numbers = candidates();
    let rules = PhoneRules::new("CN").unwrap();
    // The same normalisation feeds both sides; the reference judges the normalised text.
    let normalized: Vec<String> = numbers
        .iter()
        .map(|n| crmdq_check::phone::normalize(n).into_owned())
        .collect();
    let mut input = String::new();
    for n in &normalized {
        let _ = writeln!(input, "{n}");
    }
    let script = r#"
import sys, phonenumbers
for line in sys.stdin.read().splitlines():
    try:
        n = phonenumbers.parse(line if not line.startswith("00") else "+" + line[2:], "CN")
        ok = phonenumbers.is_valid_number_for_region(n, "CN")
    except phonenumbers.NumberParseException:
        ok = False
    print("1" if ok else "0")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let reference: Vec<bool> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l == "1")
        .collect();
    assert_eq!(reference.len(), numbers.len());
    let mut mismatches = Vec::new();
    for ((raw, norm), want) in numbers.iter().zip(&normalized).zip(&reference) {
        let got = rules.is_valid(raw);
        if got != *want {
            mismatches.push(format!(
                "{raw} (normalised {norm}): crmdq {got}, libphonenumber {want}"
            ));
        }
    }
    let valid = reference.iter().filter(|v| **v).count();
    assert!(
        valid > 300,
        "the sample should hold many valid numbers, has {valid}"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} verdicts differ:\n{}",
        mismatches.len(),
        numbers.len(),
        mismatches.join("\n")
    );
}
