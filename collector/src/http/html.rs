//! Markup that escapes by construction: [`Html`] is built only by the [`html!`] macro (a
//! literal template whose arguments are escaped unless they are `Html` themselves), from
//! escaped text, or by joining other `Html`. A string from an alert, a path, a user name or a
//! query can reach a page only through an argument, so only escaped.
//!
//! The template must be a string literal, and names in it cannot capture variables from the
//! surrounding scope (the template is expanded through `concat!`, which turns capturing off):
//! every value passes through [`Arg`].

use std::fmt;

/// A piece of HTML whose every interpolated value was escaped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Html(String);

impl Html {
    /// Text as markup: `&`, `<`, `>`, `"` and `'` escaped (safe in content and in quoted
    /// attributes).
    pub fn text(s: &str) -> Html {
        let mut out = String::with_capacity(s.len());
        escape_into(s, &mut out);
        Html(out)
    }

    /// Appends another piece.
    pub fn push(&mut self, more: Html) {
        self.0.push_str(&more.0);
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The markup, for the response body.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Only for [`html!`]: the template is a literal and every argument went through [`Arg`].
    #[doc(hidden)]
    pub fn from_template(s: String) -> Html {
        Html(s)
    }
}

impl FromIterator<Html> for Html {
    fn from_iter<I: IntoIterator<Item = Html>>(iter: I) -> Html {
        let mut all = Html::default();
        for h in iter {
            all.push(h);
        }
        all
    }
}

fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// How a value goes into a template: text is escaped, numbers are written as they are,
/// [`Html`] is inserted as it is.
pub trait Render {
    fn render(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl Render for Html {
    fn render(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Render for str {
    fn render(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(self.len());
        escape_into(self, &mut out);
        f.write_str(&out)
    }
}

impl Render for String {
    fn render(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_str().render(f)
    }
}

impl<T: Render + ?Sized> Render for &T {
    fn render(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).render(f)
    }
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl Render for $t {
            fn render(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{self}")
            }
        }
    )*};
}
numbers!(u8, u16, u32, u64, usize, i32, i64);

/// A template argument: displays as its [`Render`] form.
#[doc(hidden)]
pub struct Arg<'a, T: Render + ?Sized>(pub &'a T);

impl<T: Render + ?Sized> fmt::Display for Arg<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.render(f)
    }
}

/// `html!("<p>{}</p>", text)`: an [`Html`] from a literal template, positional or named
/// arguments (`{id}` with `id = …`), each escaped unless it is `Html`.
macro_rules! html {
    (@go $fmt:literal [$($done:tt)*]) => {
        $crate::http::html::Html::from_template(format!(concat!($fmt) $($done)*))
    };
    (@go $fmt:literal [$($done:tt)*] $name:ident = $arg:expr $(, $($rest:tt)*)?) => {
        html!(@go $fmt [$($done)* , $name = $crate::http::html::Arg(&$arg)] $($($rest)*)?)
    };
    (@go $fmt:literal [$($done:tt)*] $arg:expr $(, $($rest:tt)*)?) => {
        html!(@go $fmt [$($done)* , $crate::http::html::Arg(&$arg)] $($($rest)*)?)
    };
    ($fmt:literal $(, $($rest:tt)*)?) => { html!(@go $fmt [] $($($rest)*)?) };
}
pub(crate) use html;

#[cfg(test)]
mod tests {
    use super::*;

    /// One `check()` per module: what a piece renders to.
    fn check(got: Html, want: &str) {
        assert_eq!(got.into_string(), want);
    }

    #[test]
    fn arguments_are_escaped_unless_they_are_markup() {
        let hostile = "<script>\"x\"&'y'</script>";
        check(
            html!("<p title=\"{}\">{}</p>", hostile, hostile),
            "<p title=\"&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;\">&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;</p>",
        );
        check(Html::text("客户名单.csv"), "客户名单.csv");
        // Markup built from escaped parts is inserted once, not escaped twice.
        let inner = html!("<b>{}</b>", "a&b");
        check(
            html!("<p>{inner}</p>", inner = inner),
            "<p><b>a&amp;b</b></p>",
        );
        check(
            html!("{} {n} {}", 7u64, -3i64, n = String::from("<n>")),
            "7 &lt;n&gt; -3",
        );
        let list: Html = ["<1>", "2"]
            .iter()
            .map(|s| html!("<li>{}</li>", s))
            .collect();
        check(list, "<li>&lt;1&gt;</li><li>2</li>");
        assert!(Html::default().is_empty());
    }
}
