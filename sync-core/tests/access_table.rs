//! `docs/access.md`'s role table and `weft_sync_core::access::decide` say the same thing, cell by
//! cell: the documentation is read here and compared with the code.

use weft_sync_core::access::{Action, Decision, Role, Target, decide};

#[test]
fn the_documented_table_is_the_one_the_code_decides_by() {
    let doc = include_str!("../../docs/access.md");
    let rows: Vec<Vec<&str>> = doc
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| line.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let header = doc.lines().find(|line| line.starts_with("| action |")).expect("the table's header");
    let roles: Vec<Role> = header
        .trim_matches('|')
        .split('|')
        .skip(1)
        .map(|name| Role::parse(name.trim()).unwrap_or_else(|| panic!("unknown role {name:?}")))
        .collect();
    assert_eq!(roles, Role::ALL, "the table's columns are every role, most powerful first");
    let documented: Vec<&str> = rows.iter().map(|row| row[0].trim_matches('`')).collect();
    let coded: Vec<&str> = Action::ALL.iter().map(|action| action.as_str()).collect();
    assert_eq!(documented, coded, "the table's rows are every action, in order");

    let mine = Target { creator: true, ..Target::WORKSPACE };
    for (row, action) in rows.iter().zip(Action::ALL) {
        for (cell, role) in row[1..].iter().zip(roles.iter().copied()) {
            let others = decide(Some(role), action, Target::WORKSPACE);
            let own = decide(Some(role), action, mine);
            let said = match (others, own) {
                (Decision::Allow, Decision::Allow) => "yes",
                (Decision::Forbidden, Decision::Allow) => "own",
                (Decision::Forbidden, Decision::Forbidden) => "no",
                other => panic!("{} for {}: unexpected {other:?}", action.as_str(), role.as_str()),
            };
            assert_eq!(*cell, said, "{} for {}", action.as_str(), role.as_str());
        }
    }
}
