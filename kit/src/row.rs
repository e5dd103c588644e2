//! [`from_row!`](crate::from_row): a service's row types read from their columns.

/// `FromRow` for a struct read from a row: a field given alone is the column of its
/// name (`Row::get`); one given with a value is that expression, in which `row` (named
/// by the closure-like head) is the row.
///
/// ```ignore
/// ticketing_kit::from_row!(|row| Copy {
///     id,
///     status: row.parse("status")?,
///     price: Cents::new(row.get("price_cents")?),
/// });
/// ```
#[macro_export]
macro_rules! from_row {
    (|$row:ident| $ty:ident { $($field:ident $(: $value:expr)?),* $(,)? }) => {
        impl $crate::__store::FromRow for $ty {
            fn from_row(
                $row: &$crate::__store::Row,
            ) -> ::std::result::Result<$ty, $crate::__store::Error> {
                Ok($ty {
                    $($field: $crate::from_row!(@field $row, $field $(, $value)?)),*
                })
            }
        }
    };
    (@field $row:ident, $field:ident) => {
        $row.get(stringify!($field))?
    };
    (@field $row:ident, $field:ident, $value:expr) => {
        $value
    };
}
