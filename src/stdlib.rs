//! The `.site` modules shipped inside the binary (`stdlib/`), loaded with
//! `use std/NAME`. Only data: the modules are parsed like any user file.

/// Every stdlib module: its name after `std/`, and its text.
pub const MODULES: &[(&str, &str)] = &[("platform", include_str!("../stdlib/platform.site"))];

/// The text of `std/NAME`, if there is such a module.
pub fn module(name: &str) -> Option<&'static str> {
    MODULES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// Names as `use` writes them (`std/platform`), for suggestions.
pub fn names() -> impl Iterator<Item = String> {
    MODULES.iter().map(|(n, _)| format!("std/{n}"))
}
