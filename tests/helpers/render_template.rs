//! Not a test: renders one built-in template with a JSON context, with the
//! same strict renderer `sitec render` uses (`templates::Templates`), for
//! `examples/apps/blog/smoke.sh`, which deploys the blog by hand from the
//! real templates.
//!
//! `cargo run -q --example render_template -- TEMPLATE CONTEXT.json OUTPUT`
//! (TEMPLATE as named under `templates/`, without `.hbs`).

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [template, context, output] = &args[..] else {
        return Err("usage: render_template TEMPLATE CONTEXT.json OUTPUT".into());
    };
    let text = std::fs::read_to_string(context).map_err(|e| format!("{context}: {e}"))?;
    let context: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{context}: {e}"))?;
    let templates = sitec::templates::Templates::new()?;
    let rendered =
        (templates.render(template, &context)).map_err(|e| format!("{template}: {e}"))?;
    std::fs::write(output, rendered).map_err(|e| format!("{output}: {e}"))
}
