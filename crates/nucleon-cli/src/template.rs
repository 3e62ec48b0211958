//! The templates' two rules, and nothing more: `{{key}}` is replaced by its value, and
//! the lines between `{{#if flag}}` (or `{{#if !flag}}`) and `{{/if}}`, each directive
//! alone on its line, are kept only when the flag says so (`{{else}}` turns it round).

use std::collections::BTreeMap;

/// A template that cannot be rendered: a bug in the templates, which the tests render
/// in every variant.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateError {
    /// A `{{key}}` with no value.
    #[error("template `{template}`, line {line}: no value for `{{{{{key}}}}}`")]
    UnknownKey {
        /// The template.
        template: &'static str,
        /// The line (from 1).
        line: usize,
        /// The key.
        key: String,
    },
    /// An `{{#if flag}}` on a flag that does not exist.
    #[error("template `{template}`, line {line}: no flag `{flag}`")]
    UnknownFlag {
        /// The template.
        template: &'static str,
        /// The line (from 1).
        line: usize,
        /// The flag.
        flag: String,
    },
    /// `{{` with no `}}` after it on its line.
    #[error("template `{template}`, line {line}: `{{{{` is not closed")]
    Unclosed {
        /// The template.
        template: &'static str,
        /// The line (from 1).
        line: usize,
    },
    /// An `{{else}}` or `{{/if}}` outside any `{{#if}}`, or an `{{#if}}` never closed.
    #[error("template `{template}`, line {line}: {what}")]
    Unbalanced {
        /// The template.
        template: &'static str,
        /// The line (from 1).
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
}

/// The values and flags a template is rendered with.
#[derive(Debug, Default, Clone)]
pub(crate) struct Context {
    values: BTreeMap<&'static str, String>,
    flags: BTreeMap<&'static str, bool>,
}

impl Context {
    /// Sets `{{key}}`.
    pub(crate) fn value(&mut self, key: &'static str, value: impl Into<String>) -> &mut Self {
        self.values.insert(key, value.into());
        self
    }

    /// Sets the flag `{{#if flag}}` tests.
    pub(crate) fn flag(&mut self, flag: &'static str, on: bool) -> &mut Self {
        self.flags.insert(flag, on);
        self
    }

    /// Renders `text`, the template named `template`.
    pub(crate) fn render(
        &self,
        template: &'static str,
        text: &str,
    ) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(text.len());
        // Per open `{{#if}}`: whether its lines are kept (its own condition and every
        // enclosing one), and whether it has seen its `{{else}}`.
        let mut open: Vec<(bool, bool)> = Vec::new();
        for (index, line) in text.split_inclusive('\n').enumerate() {
            let number = index + 1;
            let kept = open.last().is_none_or(|&(kept, _)| kept);
            let directive = line.trim();
            if let Some(flag) = directive
                .strip_prefix("{{#if ")
                .and_then(|rest| rest.strip_suffix("}}"))
            {
                let flag = flag.trim();
                let (negated, name) = match flag.strip_prefix('!') {
                    Some(name) => (true, name.trim()),
                    None => (false, flag),
                };
                let Some(&on) = self.flags.get(name) else {
                    return Err(TemplateError::UnknownFlag {
                        template,
                        line: number,
                        flag: name.to_owned(),
                    });
                };
                open.push((kept && on != negated, false));
                continue;
            }
            if directive == "{{else}}" {
                let parent = open.len() < 2 || open[open.len() - 2].0;
                match open.last_mut() {
                    Some((kept, seen_else @ false)) => {
                        *kept = parent && !*kept;
                        *seen_else = true;
                    }
                    _ => {
                        return Err(TemplateError::Unbalanced {
                            template,
                            line: number,
                            what: "`{{else}}` outside an `{{#if}}` (or a second one)",
                        });
                    }
                }
                continue;
            }
            if directive == "{{/if}}" {
                if open.pop().is_none() {
                    return Err(TemplateError::Unbalanced {
                        template,
                        line: number,
                        what: "`{{/if}}` without its `{{#if}}`",
                    });
                }
                continue;
            }
            if kept {
                self.substitute(template, number, line, &mut out)?;
            }
        }
        if !open.is_empty() {
            return Err(TemplateError::Unbalanced {
                template,
                line: text.lines().count(),
                what: "an `{{#if}}` is not closed by `{{/if}}`",
            });
        }
        Ok(out)
    }

    /// Appends `line` to `out`, its `{{key}}`s replaced.
    fn substitute(
        &self,
        template: &'static str,
        number: usize,
        mut line: &str,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        while let Some(start) = line.find("{{") {
            out.push_str(&line[..start]);
            let rest = &line[start + 2..];
            let Some(end) = rest.find("}}") else {
                return Err(TemplateError::Unclosed {
                    template,
                    line: number,
                });
            };
            let key = rest[..end].trim();
            let Some(value) = self.values.get(key) else {
                return Err(TemplateError::UnknownKey {
                    template,
                    line: number,
                    key: key.to_owned(),
                });
            };
            out.push_str(value);
            line = &rest[end + 2..];
        }
        out.push_str(line);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        let mut context = Context::default();
        context
            .value("name", "hello")
            .flag("db", true)
            .flag("amqp", false);
        context
    }

    #[test]
    fn values_and_flags() {
        let text = "a {{name}}{{ name }}\n{{#if db}}\ndb {{name}}\n  {{#if amqp}}\nboth\n  {{else}}\ndb alone\n  {{/if}}\n{{/if}}\n{{#if !db}}\nno db\n{{else}}\nnot no db\n{{/if}}\n{{#if amqp}}\n{{#if db}}\nnever\n{{else}}\nnever either\n{{/if}}\n{{/if}}\nend";
        assert_eq!(
            context().render("t", text).unwrap(),
            "a hellohello\ndb hello\ndb alone\nnot no db\nend"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let render = |text| context().render("t", text).unwrap_err();
        assert_eq!(
            render("x\n{{nmae}}"),
            TemplateError::UnknownKey {
                template: "t",
                line: 2,
                key: "nmae".into()
            }
        );
        assert!(matches!(
            render("{{#if dv}}\n{{/if}}"),
            TemplateError::UnknownFlag { .. }
        ));
        assert!(matches!(render("a {{name"), TemplateError::Unclosed { .. }));
        assert!(matches!(
            render("{{/if}}"),
            TemplateError::Unbalanced { .. }
        ));
        assert!(matches!(
            render("{{#if db}}\n"),
            TemplateError::Unbalanced { .. }
        ));
        assert!(matches!(
            render("{{#if db}}\n{{else}}\n{{else}}\n{{/if}}"),
            TemplateError::Unbalanced { .. }
        ));
        assert_eq!(
            render("{{x}}").to_string(),
            "template `t`, line 1: no value for `{{x}}`"
        );
    }
}
