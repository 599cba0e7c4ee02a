//! YAML configuration helpers shared by every configuration reader: a
//! pipeline file holds one section per stage, and the dataset and training
//! readers accept either their own file or such a pipeline file.

/// Takes section `key` of a pipeline file as a configuration of its own
/// (with the pipeline's `name`, and `defaults` where absent); a value that
/// is not a pipeline file is returned unchanged.
pub fn section(value: serde_norway::Value, key: &str, defaults: &[(&str, &str)]) -> serde_norway::Value {
    use serde_norway::Value;
    let Value::Mapping(top) = &value else { return value };
    let Some(Value::Mapping(sec)) = top.get(Value::String(key.into())) else { return value };
    let mut sec = sec.clone();
    if let Some(name) = top.get(Value::String("name".into())) {
        sec.entry(Value::String("name".into())).or_insert(name.clone());
    }
    for (k, v) in defaults {
        sec.entry(Value::String((*k).into())).or_insert(Value::String((*v).into()));
    }
    Value::Mapping(sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_become_configurations() {
        let v: serde_norway::Value = serde_norway::from_str("name: q\nsimulate: {model: fhn}\n").unwrap();
        let s = section(v, "simulate", &[("x", "1")]);
        assert_eq!(serde_norway::to_string(&s).unwrap(), "model: fhn\nname: q\nx: '1'\n");
    }
}
