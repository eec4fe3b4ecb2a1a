//! Exports `test:typed/sink` and `test:typed/tally` (wit/typed.wit) for typed calls: functions of
//! its app that import them are linked to it at load (composed, or host-linked: the code is the
//! same for both).
//!
//! `take-record` answers its argument with every field changed in a way the caller can check:
//! numbers plus one (ratio doubled), flag negated, letter the next one, strings upper-cased,
//! lists reversed, the note wrapped in brackets, the next color, the shape's payload doubled,
//! the pair's number plus one and its string upper-cased.

wit_bindgen::generate!({ path: "wit", world: "typed-sink" });

use exports::test::typed::sink::{Blob, Color, Guest, Shape};

struct Sink;

impl Guest for Sink {
    fn take(payload: Vec<u8>) -> Vec<u8> {
        payload
    }

    fn take_record(value: Blob) -> Blob {
        Blob {
            id: value.id.wrapping_add(1),
            delta: value.delta.wrapping_add(1),
            ratio: value.ratio * 2.0,
            flag: !value.flag,
            letter: char::from_u32(value.letter as u32 + 1).unwrap_or('?'),
            name: value.name.to_uppercase(),
            tags: value.tags.into_iter().rev().collect(),
            data: value.data.into_iter().rev().collect(),
            note: value.note.map(|n| format!("[{n}]")),
            color: match value.color {
                Color::Red => Color::Green,
                Color::Green => Color::Blue,
                Color::Blue => Color::Red,
            },
            shape: match value.shape {
                Shape::Circle(r) => Shape::Circle(r * 2.0),
                Shape::Square(side) => Shape::Square(side.wrapping_mul(2)),
                Shape::Nothing => Shape::Nothing,
            },
            pair: (value.pair.0.wrapping_add(1), value.pair.1.to_uppercase()),
        }
    }

    fn check(payload: Vec<u8>) -> Result<u32, String> {
        if payload.is_empty() {
            Err("empty payload".to_owned())
        } else {
            Ok(payload.len() as u32)
        }
    }

    fn crash() {
        panic!("typed-sink crashed on purpose");
    }

    fn call_out(function: String) -> Result<u16, String> {
        meshwa_sdk::invoke(
            &function,
            "/",
            meshwa_sdk::Buffer::new(b"from the sink"),
            &[],
        )
        .map(|answer| answer.status)
        .map_err(|error| format!("{error:?}"))
    }
}

impl exports::test::typed::tally::Guest for Sink {
    fn add(values: Vec<u32>) -> u64 {
        values.into_iter().map(u64::from).sum()
    }
}

export!(Sink);
