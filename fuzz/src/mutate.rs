//! Input mutation without coverage feedback: byte-level edits (flip, insert,
//! delete, duplicate, splice with another seed) plus token edits that aim at
//! what our parsers branch on (JSON/YAML punctuation, huge and negative
//! numbers, NUL and non-UTF-8 bytes, path tricks, deep nesting).

use fastrand::Rng;

/// Tokens that hit parser edge cases more often than random bytes do.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"false",
    b"0",
    b"-1",
    b"1e999",
    b"-0",
    b"18446744073709551616",
    b"4294967296",
    b"65536",
    b"255",
    b"253",
    b"\"\"",
    b"\\u0000",
    b"\\ud800",
    b"\xff\xfe",
    b"\0",
    b"..",
    b"../",
    b"/",
    b"%2F",
    b"=",
    b";",
    b"@",
    b"\n",
    b"  ",
    b"&a",
    b"*a",
    b"!!binary",
    b"- ",
    b"---",
    b"::",
    b"1.1.0",
    b"0.4.0",
    b"0.3.1",
    b"0.2.0",
    b"0.1.0",
    b"/128",
    b"/33",
    b"255.255.255.255",
    b"::ffff:1.2.3.4",
    b"fe80::1%eth0",
    b"0000:00:00.0",
    b"\"type\"",
    b"\"name\"",
    b"\"ips\"",
    b"\"interfaces\"",
    b"\"interface\"",
    b"\"prevResult\"",
    b"\"plugins\"",
    b"\"ipam\"",
    b"\"routes\"",
    b"\"version\"",
    b"\"vnics\"",
    b"\"deviceID\"",
];

/// Largest input a mutation may produce; parsers must also cope with more,
/// but bigger inputs only slow the search down.
pub const MAX_LEN: usize = 64 * 1024;

/// Returns a mutated copy of `seed` (1–4 stacked edits); `other` is a second
/// corpus entry for splicing.
pub fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..rng.usize(1..=4) {
        edit(rng, &mut out, other);
    }
    out.truncate(MAX_LEN);
    out
}

fn edit(rng: &mut Rng, buf: &mut Vec<u8>, other: &[u8]) {
    let len = buf.len();
    let at = rng.usize(0..=len);
    match rng.u8(0..10) {
        0 if len > 0 => {
            let i = rng.usize(0..len);
            buf[i] ^= 1 << rng.u8(0..8);
        }
        1 => buf.insert(at, rng.u8(..)),
        2 if len > 0 => {
            let end = (at + rng.usize(1..=16)).min(len);
            buf.drain(at.min(len)..end);
        }
        3 if len > 0 => {
            let start = rng.usize(0..len);
            let end = (start + rng.usize(1..=64)).min(len);
            let piece = buf[start..end].to_vec();
            let reps = rng.usize(1..=8);
            for _ in 0..reps {
                buf.splice(at..at, piece.iter().copied());
            }
        }
        4 if !other.is_empty() => {
            let start = rng.usize(0..other.len());
            let end = (start + rng.usize(1..=256)).min(other.len());
            buf.splice(at..at, other[start..end].iter().copied());
        }
        5 => nest(rng, buf, at),
        6 => replace_number(rng, buf),
        _ => {
            let tok = TOKENS[rng.usize(0..TOKENS.len())];
            if rng.bool() && at < len {
                let end = (at + tok.len()).min(len);
                buf.splice(at..end, tok.iter().copied());
            } else {
                buf.splice(at..at, tok.iter().copied());
            }
        }
    }
}

/// Deep nesting finds unbounded recursion.
fn nest(rng: &mut Rng, buf: &mut Vec<u8>, at: usize) {
    let depth = rng.usize(1..=600);
    let (open, close) = if rng.bool() {
        (b'[', b']')
    } else {
        (b'{', b'}')
    };
    let mut piece = vec![open; depth];
    if open == b'{' {
        piece = b"{\"a\":".repeat(depth);
    }
    piece.extend(std::iter::repeat_n(close, depth));
    buf.splice(at..at, piece);
}

/// Swaps one run of digits for a boundary value.
fn replace_number(rng: &mut Rng, buf: &mut Vec<u8>) {
    let digits: Vec<usize> = (0..buf.len())
        .filter(|&i| buf[i].is_ascii_digit())
        .collect();
    if digits.is_empty() {
        return;
    }
    let start = digits[rng.usize(0..digits.len())];
    let mut end = start;
    while end < buf.len() && buf[end].is_ascii_digit() {
        end += 1;
    }
    const BOUNDS: &[&str] = &[
        "0",
        "1",
        "127",
        "128",
        "255",
        "256",
        "32767",
        "65535",
        "65536",
        "2147483647",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999",
    ];
    let v = BOUNDS[rng.usize(0..BOUNDS.len())];
    buf.splice(start..end, v.bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_bounded_and_change_the_input() {
        let mut rng = Rng::with_seed(7);
        let seed = br#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#;
        let mut changed = 0;
        for _ in 0..2000 {
            let m = mutate(&mut rng, seed, b"[1,2,3]");
            assert!(m.len() <= MAX_LEN);
            if m != seed {
                changed += 1;
            }
        }
        assert!(
            changed > 1900,
            "only {changed} of 2000 mutations changed the seed"
        );
    }
}
