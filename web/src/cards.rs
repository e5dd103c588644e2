//! The sandbox's card form: a card number typed by the user becomes the Stripe test
//! token that card stands for, so the offline payment sandbox sees what Stripe would.
//! Only Stripe's published test cards are accepted; a card number is never logged.

use time::OffsetDateTime;

use ticketing_contracts::ErrorItem;

/// Stripe's test card numbers and the tokens they stand for.
const TEST_CARDS: &[(&str, &str)] = &[
    ("4242424242424242", "tok_visa"),
    ("4000056655665556", "tok_visa_debit"),
    ("5555555555554444", "tok_mastercard"),
    ("2223003122003222", "tok_mastercard"),
    ("5200828282828210", "tok_mastercard_debit"),
    ("5105105105105100", "tok_mastercard_prepaid"),
    ("378282246310005", "tok_amex"),
    ("371449635398431", "tok_amex"),
    ("6011111111111117", "tok_discover"),
    ("3056930009020004", "tok_diners"),
    ("3566002020360505", "tok_jcb"),
    ("6200000000000005", "tok_unionpay"),
    ("4000000000000002", "tok_chargeDeclined"),
    ("4000000000009995", "tok_chargeDeclinedInsufficientFunds"),
    ("4100000000000019", "tok_chargeDeclinedFraudulent"),
    ("4000000000000127", "tok_chargeDeclinedIncorrectCvc"),
    ("4000000000000069", "tok_chargeDeclinedExpiredCard"),
    ("4000000000000119", "tok_chargeDeclinedProcessingError"),
];

pub const SUCCESS_CARD: &str = "4242 4242 4242 4242";
pub const DECLINED_CARD: &str = "4000 0000 0000 0002";

/// The test token for the card typed into the form, or the errors to show beside its
/// fields.
pub fn sandbox_token(
    number: &str,
    expiry: &str,
    cvc: &str,
    now: OffsetDateTime,
) -> Result<&'static str, Vec<ErrorItem>> {
    let mut errors = Vec::new();
    let digits: String = number.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let token = if digits.is_empty() {
        errors.push(error("number", "Enter the card number."));
        None
    } else if !digits.bytes().all(|b| b.is_ascii_digit()) || !(12..=19).contains(&digits.len()) {
        errors.push(error("number", "A card number is 12 to 19 digits."));
        None
    } else if !luhn(&digits) {
        errors.push(error(
            "number",
            "This card number is not valid; check it for typos.",
        ));
        None
    } else {
        let token = TEST_CARDS
            .iter()
            .find(|(card, _)| *card == digits)
            .map(|(_, token)| *token);
        if token.is_none() {
            errors.push(error(
                "number",
                "Payments are in sandbox mode: use a test card such as 4242 4242 4242 4242.",
            ));
        }
        token
    };
    if let Err(message) = check_expiry(expiry, now) {
        errors.push(error("expiry", message));
    }
    let cvc = cvc.trim();
    if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(error(
            "cvc",
            "The security code is the 3 or 4 digits on the card.",
        ));
    }
    match token {
        Some(token) if errors.is_empty() => Ok(token),
        _ => Err(errors),
    }
}

/// `MM/YY` or `MM/YYYY`, this month or later.
fn check_expiry(expiry: &str, now: OffsetDateTime) -> Result<(), &'static str> {
    let compact: String = expiry.chars().filter(|c| !c.is_whitespace()).collect();
    let (month, year) = compact
        .split_once('/')
        .ok_or("Enter the expiry date as MM/YY.")?;
    let month: u8 = month
        .parse()
        .map_err(|_| "Enter the expiry date as MM/YY.")?;
    let year: i32 = match year.len() {
        2 => {
            2000 + year
                .parse::<i32>()
                .map_err(|_| "Enter the expiry date as MM/YY.")?
        }
        4 => year
            .parse()
            .map_err(|_| "Enter the expiry date as MM/YY.")?,
        _ => return Err("Enter the expiry date as MM/YY."),
    };
    if !(1..=12).contains(&month) {
        return Err("The month is 01 to 12.");
    }
    if (year, month) < (now.year(), u8::from(now.month())) {
        return Err("This card has expired.");
    }
    Ok(())
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 {
                    d - 9
                } else {
                    d
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn error(field: &str, message: &str) -> ErrorItem {
    ErrorItem {
        message: message.to_owned(),
        field: Some(field.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-24 10:00 UTC);

    #[test]
    fn test_cards_map_to_their_tokens() {
        assert_eq!(
            sandbox_token(SUCCESS_CARD, "12/30", "123", NOW),
            Ok("tok_visa")
        );
        assert_eq!(
            sandbox_token(DECLINED_CARD, "12 / 2030", "1234", NOW),
            Ok("tok_chargeDeclined")
        );
        assert_eq!(
            sandbox_token("4000-0000-0000-9995", "11/26", "000", NOW),
            Ok("tok_chargeDeclinedInsufficientFunds")
        );
        for (card, _) in TEST_CARDS {
            assert!(luhn(card), "{card}");
        }
    }

    #[test]
    fn bad_input_is_reported_per_field() {
        let errors = sandbox_token("4242 4242 4242 4241", "13/30", "12", NOW).unwrap_err();
        let fields: Vec<_> = errors.iter().filter_map(|e| e.field.as_deref()).collect();
        assert_eq!(fields, ["number", "expiry", "cvc"]);
        let errors = sandbox_token("", "10/26", "123", NOW).unwrap_err();
        assert_eq!(errors[0].message, "Enter the card number.");
        assert_eq!(errors[1].message, "This card has expired.");
        // A real, valid card number is not a sandbox card.
        let errors = sandbox_token("4111 1111 1111 1112", "12/30", "123", NOW).unwrap_err();
        assert_eq!(errors.len(), 1);
    }
}
