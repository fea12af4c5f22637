//! `-o/--output`: parsed straight into the renderers' [`Format`], with help that says what each
//! format means for the command at hand (a snapshot's lines are not the event log's).

use std::ffi::OsStr;

use clap::{
    Arg, Command,
    builder::{PossibleValue, PossibleValuesParser, TypedValueParser},
    error::ErrorKind,
};
use enetstat::render::Format;

/// The formats by the names the command line (and the wire) gives them.
const NAMES: [(Format, &str); 3] = [
    (Format::Text, "text"),
    (Format::Json, "json"),
    (Format::Csv, "csv"),
];

/// `-o`'s value parser: text, json or csv, each with the help line given, in that order.
#[derive(Clone, Copy, Debug)]
pub struct FormatArg {
    pub help: [&'static str; 3],
}

impl FormatArg {
    fn values(self) -> impl Iterator<Item = PossibleValue> {
        NAMES
            .into_iter()
            .zip(self.help)
            .map(|((_, name), help)| PossibleValue::new(name).help(help))
    }
}

impl TypedValueParser for FormatArg {
    type Value = Format;

    /// Checks the value as clap checks any list of possible values (same error, same
    /// suggestions), then maps the name to its format.
    fn parse_ref(
        &self,
        cmd: &Command,
        arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<Format, clap::Error> {
        let name = PossibleValuesParser::new(self.values()).parse_ref(cmd, arg, value)?;
        NAMES
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(format, _)| format)
            .ok_or_else(|| clap::Error::new(ErrorKind::InvalidValue).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(self.values()))
    }
}
