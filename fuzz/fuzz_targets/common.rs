//! What every decoder target checks beyond "no panic": a decoded event renders into a valid
//! subject of at most 256 bytes through every token its kind offers.

use ferry::subject::{self, Template};
use ferry_adapter::{Decoder, Input, NoHeaders};

/// Splits a fuzz input into a subject (up to the first NUL) and a payload (the rest).
pub fn split(data: &[u8]) -> (String, &[u8]) {
    match data.iter().position(|byte| *byte == 0) {
        Some(at) => (String::from_utf8_lossy(&data[..at]).into_owned(), &data[at + 1..]),
        None => ("choria.lifecycle.event.alive.server".to_string(), data),
    }
}

pub fn check(decoder: &dyn Decoder, subject: &str, payload: &[u8], templates: &[&str]) {
    let input = Input::with_headers(subject, payload, &NoHeaders);
    let Ok(event) = decoder.decode(&input) else {
        return;
    };
    for template in templates {
        let template = Template::parse(template).expect("the target's templates are valid");
        let rendered = template.render(|name| event.field(name));
        assert!(rendered.len() <= 256, "{rendered}");
        assert!(
            subject::validate(&rendered, false).is_ok(),
            "invalid subject {rendered:?}"
        );
    }
}
