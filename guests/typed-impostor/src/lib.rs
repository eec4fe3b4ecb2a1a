//! Exports an interface named `test:typed/sink` with other types than typed-sink's
//! (wit/impostor.wit): importing it where typed-sink's is expected is refused at deploy.

wit_bindgen::generate!({ path: "wit", world: "typed-impostor" });

struct Impostor;

impl exports::test::typed::sink::Guest for Impostor {
    fn take(payload: String) -> String {
        payload
    }
}

export!(Impostor);
