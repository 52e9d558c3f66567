//! Writing numbers into text on hot paths, without the formatting machinery of `format!`.

/// Appends the decimal digits of `value`.
pub fn push_decimal(out: &mut String, value: impl Into<u128>) {
    let mut digits = [0u8; 40];
    let mut at = digits.len();
    let mut rest: u128 = value.into();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &digit in &digits[at..] {
        out.push(digit as char);
    }
}

#[cfg(test)]
mod tests {
    use super::push_decimal;

    #[test]
    fn writes_what_format_writes() {
        for value in [0u128, 7, 10, 99, 1_000_000, u64::MAX as u128, u128::MAX] {
            let mut out = String::from("x");
            push_decimal(&mut out, value);
            assert_eq!(out, format!("x{value}"));
        }
    }
}
